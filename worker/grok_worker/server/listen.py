"""Where the worker's listeners bind: one place that turns a configured address into sockets.

`security.bind_address` ("" = every interface) reaches every API listener through these helpers:
`listen` makes the TCP socket aiohttp serves on (the HTTP API, the metrics port) and `grpc_address`
the "host:port" string grpc binds. "" / "::" / "0.0.0.0" / "[::]" mean every interface, IPv4 and
IPv6 on one port.
"""

from __future__ import annotations

import socket

#: What "every interface" is spelled as in the config and on the command line.
ANY_HOSTS = ("", "::", "0.0.0.0", "[::]")


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on `host`: every interface is IPv4 and IPv6 on one port (asyncio would
    bind two sockets, v6-only, with two different ports for port 0)."""
    host = host.strip("[]")
    if host in ANY_HOSTS:
        if socket.has_dualstack_ipv6():
            return socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
        return socket.create_server(("0.0.0.0", port))
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


def grpc_address(host: str, port: int) -> str:
    """grpc's "host:port": every interface is "[::]", an IPv6 literal gets brackets."""
    if host in ANY_HOSTS:
        return f"[::]:{port}"
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"
