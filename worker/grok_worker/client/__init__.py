"""Python clients (sync and asyncio) of the grok.v1 generation API, and the `grok` CLI."""

from grok_worker.client.client import AsyncGrokClient, GrokClient, build_request
from grok_worker.client.security import ClientSecurity

__all__ = ["AsyncGrokClient", "ClientSecurity", "GrokClient", "build_request"]
