"""The worker's serving certificate, kept current while it runs: a renewed TLS Secret is served
without a restart.

Data flow: the `TLSFiles` read at start (tls.py) -> `ServedCertificate`, which gives each gRPC
listener dynamic credentials (gRPC asks their fetcher before every new connection's handshake) and
the HTTP API an `ssl.SSLContext`. `run()` checks the files every `poll_seconds` (file_signature.py:
kubelet's swap of a mounted Secret, or a file rewritten in place). When they changed, `check()`
reads them and builds a throw-away context from the bytes read, which fails unless certificate and
key match and the CA parses; only then does it serve them: it loads the same bytes into every live
HTTP context (new handshakes use them, open connections keep theirs) and moves the generation on,
which each gRPC fetcher compares with the one it served last. Files that do not read or match are
logged once per change, and the certificate served so far stays.

Whether clients must present a certificate (mutual TLS) follows from `client_ca_file` being set,
which only a new config changes (the operator rolls a group when that changes: per
spec.serving.tls.clientCertificates, or with Auto when its Secret gains or loses `ca.crt`). A renewed client CA replaces the old one on gRPC; the HTTP API trusts it beside the old
one until the worker restarts (Python's `ssl` cannot drop a trusted CA from a live context).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import cast

import grpc

from grok_worker.server.file_signature import Signature, file_signature
from grok_worker.server.tls import (
    TLSConfigError,
    TLSFiles,
    grpc_config,
    load_chain,
    load_client_ca,
    reread,
    ssl_context,
)

log = logging.getLogger(__name__)

#: How often the files are checked for a renewal.
DEFAULT_POLL_SECONDS = 5.0


def fingerprint(files: TLSFiles) -> str:
    """The SHA-256 fingerprint of the certificate (its first PEM block), as `openssl x509
    -fingerprint -sha256` prints it; public, safe to log."""
    pem = files.cert.decode(errors="replace")
    end = pem.find("-----END CERTIFICATE-----")
    der = ssl.PEM_cert_to_DER_cert(pem[: end + len("-----END CERTIFICATE-----")])
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


class ServedCertificate:
    """The certificate every TLS listener of this worker serves; see the module docstring."""

    def __init__(self, files: TLSFiles, poll_seconds: float = DEFAULT_POLL_SECONDS) -> None:
        self.files = files
        self.poll_seconds = poll_seconds
        self.generation = 0
        self._lock = threading.Lock()  # gRPC calls its fetchers from its own threads
        self._contexts: list[ssl.SSLContext] = []
        self._signature: Signature | None = self._signature_now()

    def _paths(self) -> list[Path]:
        names = (self.files.cert_file, self.files.key_file, self.files.client_ca_file)
        return [Path(name) for name in names if name]

    def _signature_now(self) -> Signature | None:
        try:
            return file_signature(self._paths())
        except OSError:
            return None  # mid-swap or gone: compared again at the next check

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Credentials for one gRPC listener, following every renewal."""
        # gRPC documents None from the fetcher as "no change"; its type stubs leave None out.
        fetcher = cast(Callable[[], grpc.ServerCertificateConfiguration], self._fetcher())
        return grpc.dynamic_ssl_server_credentials(
            grpc_config(self.files), fetcher, require_client_authentication=self.files.mutual
        )

    def _fetcher(self) -> Callable[[], grpc.ServerCertificateConfiguration | None]:
        served = [self.generation]

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            with self._lock:
                if served[0] == self.generation:
                    return None  # gRPC keeps what it has
                served[0] = self.generation
                return grpc_config(self.files)

        return fetch

    def ssl_context(self) -> ssl.SSLContext:
        """A context for the HTTP API, following every renewal."""
        context = ssl_context(self.files)
        self._contexts.append(context)
        return context

    def check(self) -> bool:
        """Serve the files anew if they changed and are good; True when a renewal was taken."""
        signature = self._signature_now()
        if signature is None or signature == self._signature:
            return False
        self._signature = signature
        try:
            fresh = reread(self.files)
            ssl_context(fresh)  # certificate and key match, the CA parses
            for context in self._contexts:
                load_chain(context, fresh)
                load_client_ca(context, fresh)
        except TLSConfigError as err:
            log.warning("the TLS files changed but cannot be served (%s); serving the last good ones", err)
            return False
        with self._lock:
            self.files, self.generation = fresh, self.generation + 1
        log.info(
            "serving the renewed TLS certificate from %s (SHA-256 %s)", fresh.cert_file, fingerprint(fresh)
        )
        return True

    async def run(self) -> None:
        """Check every `poll_seconds` until cancelled."""
        while True:
            await asyncio.sleep(self.poll_seconds)
            self.check()
