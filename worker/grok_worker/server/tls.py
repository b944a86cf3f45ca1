"""TLS for the worker's gRPC and HTTP APIs, from the files named in `security.tls`.

Data flow: `TLSSection` (cert_file, key_file, optional client_ca_file) -> `read_tls` checks and reads
the PEM files once (errors name the setting and the flag) -> `grpc_credentials` for
`grpc.aio.Server.add_secure_port` and `ssl_context` for aiohttp. A client CA turns on mutual TLS: a
client must present a certificate that chains to it, on both APIs.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from grok_worker.contract import TLSSection


class TLSConfigError(ValueError):
    """A TLS file is missing or unreadable; the message names the setting."""


@dataclass(frozen=True)
class TLSFiles:
    cert_file: str
    key_file: str
    client_ca_file: str
    cert: bytes
    key: bytes
    client_ca: bytes | None

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None


def _read(path: str, setting: str, flag: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise TLSConfigError(f"security.tls.{setting} ({flag}): cannot read {path}: {err.strerror}") from None
    if b"-----BEGIN" not in data:
        raise TLSConfigError(f"security.tls.{setting} ({flag}): {path} is not a PEM file")
    return data


def read_tls(tls: TLSSection) -> TLSFiles | None:
    """The PEM contents of the configured files, or None when TLS is off (no cert_file)."""
    if not tls.enabled:
        if tls.key_file or tls.client_ca_file:
            raise TLSConfigError(
                "security.tls.cert_file (--tls-cert) is empty but key_file or client_ca_file is set: "
                "set all of cert_file and key_file to serve TLS"
            )
        return None
    if not tls.key_file:
        raise TLSConfigError("security.tls.key_file (--tls-key) must be set with security.tls.cert_file")
    ca = _read(tls.client_ca_file, "client_ca_file", "--tls-client-ca") if tls.client_ca_file else None
    return TLSFiles(
        tls.cert_file,
        tls.key_file,
        tls.client_ca_file,
        _read(tls.cert_file, "cert_file", "--tls-cert"),
        _read(tls.key_file, "key_file", "--tls-key"),
        ca,
    )


def grpc_credentials(files: TLSFiles) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(files.key, files.cert)], root_certificates=files.client_ca, require_client_auth=files.mutual
    )


def ssl_context(files: TLSFiles) -> ssl.SSLContext:
    """A server context (TLS 1.2+) with the same certificate; verifies client certs when mutual."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(files.cert_file, files.key_file)
    except ssl.SSLError as err:
        raise TLSConfigError(
            f"security.tls.cert_file / key_file: {files.cert_file} and {files.key_file} "
            f"are not a matching certificate and key: {err}"
        ) from None
    if files.client_ca is not None:
        context.load_verify_locations(cadata=files.client_ca.decode())
        context.verify_mode = ssl.CERT_REQUIRED
    return context
