"""How a client reaches a worker that serves TLS and wants a bearer token.

Data flow: `--tls/--ca/--cert/--key/--token` (or $GROK_TOKEN) -> `ClientSecurity` ->
`open_channel` (a secure channel when TLS is on: the server is verified against `ca`, else the
system roots; `cert`/`key` are this client's certificate for mutual TLS; every channel balances
calls round robin over all the addresses its target resolves to, so a headless client Service
spreads them over every replica group's leader) and `metadata`
(`authorization: Bearer <token>` sent with every call, also over plaintext for local use). The
token is never printed: `repr` hides it.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import grpc

TOKEN_ENV = "GROK_TOKEN"
Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ClientSecurity:
    #: Speak TLS (implied by ca, cert or key).
    tls: bool = False
    #: PEM CA bundle that the server's certificate must chain to (None = the system's roots).
    ca: str | None = None
    #: PEM certificate and key of this client, for servers that require mutual TLS.
    cert: str | None = None
    key: str | None = None
    token: str | None = field(default=None, repr=False)

    @property
    def uses_tls(self) -> bool:
        return self.tls or bool(self.ca or self.cert or self.key)

    @property
    def metadata(self) -> Metadata:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def channel_credentials(self) -> grpc.ChannelCredentials:
        if bool(self.cert) != bool(self.key):
            raise ValueError("--cert and --key go together: give both for a client certificate, or neither")
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca, "--ca"),
            private_key=_read(self.key, "--key"),
            certificate_chain=_read(self.cert, "--cert"),
        )


def _read(path: str | None, flag: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ValueError(f"{flag}: cannot read {path}: {err.strerror}") from None


#: Spread calls over every address the target resolves to (gRPC's default, pick_first, keeps
#: one connection to the first): a headless Service's name resolves to each Ready leader.
CHANNEL_OPTIONS = (("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})),)


def open_channel(target: str, security: ClientSecurity | None) -> grpc.Channel:
    if security is not None and security.uses_tls:
        return grpc.secure_channel(target, security.channel_credentials(), options=CHANNEL_OPTIONS)
    return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)


def open_aio_channel(target: str, security: ClientSecurity | None) -> grpc.aio.Channel:
    if security is not None and security.uses_tls:
        return grpc.aio.secure_channel(target, security.channel_credentials(), options=CHANNEL_OPTIONS)
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--tls", action="store_true", help="connect with TLS (implied by --ca, --cert, --key)")
    a("--ca", help="PEM CA bundle that the server's certificate must chain to (default: system roots)")
    a("--cert", help="PEM client certificate, for a worker that requires mutual TLS")
    a("--key", help="PEM private key of --cert")
    a("--token", help=f"bearer token (prefer ${TOKEN_ENV}: a flag shows in the process list)")


def from_arguments(args: argparse.Namespace) -> ClientSecurity:
    return ClientSecurity(
        tls=args.tls,
        ca=args.ca,
        cert=args.cert,
        key=args.key,
        token=args.token or os.environ.get(TOKEN_ENV) or None,
    )
