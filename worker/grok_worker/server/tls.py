"""TLS for the worker's gRPC and HTTP APIs, from the files named in `security.tls`.

Data flow: `TLSSection` (cert_file, key_file, optional client_ca_file) -> `read_tls` checks and reads
the PEM files (errors name the setting and the flag; `reread` reads the same paths again) ->
`grpc_config` for gRPC and `ssl_context` for aiohttp, both built from the bytes read, so the two APIs
always serve the same certificate; cert_reload.py keeps them current while the worker runs. A
client CA turns on mutual TLS: a client must present a certificate that chains to it, on both APIs.

Python's `ssl` loads a certificate and key only from files; `load_chain` hands it the bytes through
two anonymous in-memory files (memfd), so a key never lands on disk and what is loaded is exactly
what was checked, even while kubelet swaps the mounted Secret underneath.
"""

from __future__ import annotations

import os
import ssl
from contextlib import ExitStack
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
    return _read_files(tls.cert_file, tls.key_file, tls.client_ca_file)


def reread(files: TLSFiles) -> TLSFiles:
    """The same files read again (a renewed Secret); raises TLSConfigError like `read_tls`."""
    return _read_files(files.cert_file, files.key_file, files.client_ca_file)


def _read_files(cert_file: str, key_file: str, client_ca_file: str) -> TLSFiles:
    ca = _read(client_ca_file, "client_ca_file", "--tls-client-ca") if client_ca_file else None
    cert = _read(cert_file, "cert_file", "--tls-cert")
    return TLSFiles(cert_file, key_file, client_ca_file, cert, _read(key_file, "key_file", "--tls-key"), ca)


def grpc_config(files: TLSFiles) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(files.key, files.cert)], root_certificates=files.client_ca
    )


def load_chain(context: ssl.SSLContext, files: TLSFiles) -> None:
    """Load `files`' certificate and key, as read, into `context` (through memfds, see above);
    raises TLSConfigError when they do not match."""
    with ExitStack() as stack:
        paths = []
        for name, data in (("tls.crt", files.cert), ("tls.key", files.key)):
            fd = os.memfd_create(name, os.MFD_CLOEXEC)
            stack.callback(os.close, fd)
            os.write(fd, data)
            paths.append(f"/proc/self/fd/{fd}")
        try:
            context.load_cert_chain(paths[0], paths[1])
        except ssl.SSLError as err:
            raise TLSConfigError(
                f"security.tls.cert_file / key_file: {files.cert_file} and {files.key_file} "
                f"are not a matching certificate and key: {err}"
            ) from None


def load_client_ca(context: ssl.SSLContext, files: TLSFiles) -> None:
    """Trust `files`' client CA bundle (added to the ones `context` trusts already)."""
    if files.client_ca is None:
        return
    try:
        context.load_verify_locations(cadata=files.client_ca.decode())
    except (ssl.SSLError, ValueError) as err:
        raise TLSConfigError(
            f"security.tls.client_ca_file (--tls-client-ca): {files.client_ca_file} is not a CA bundle: {err}"
        ) from None


def ssl_context(files: TLSFiles) -> ssl.SSLContext:
    """A server context (TLS 1.2+) with the certificate as read; verifies client certs when mutual.
    Raises TLSConfigError when certificate and key do not match or the CA does not parse."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_chain(context, files)
    if files.client_ca is not None:
        load_client_ca(context, files)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
