"""Generated protocol buffer packages of the Grok serving API (`grok.v1`); see protos/generate.py."""
