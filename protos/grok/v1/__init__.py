"""grok.v1: generated messages and stubs of the generation API (do not edit; run `make protos`)."""
