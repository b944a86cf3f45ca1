"""HTTP(S) health probes and a polling helper for start-up waits.

etcd answers plain HTTP on loopback; kube-apiserver's /readyz needs the run's CA and admin client
certificate; controller-manager and scheduler serve /healthz over HTTPS with a self-signed
certificate (and always allow that path), so their probe skips verification: it only asks
whether the process is up, on a loopback port we chose.
"""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path


def client_tls(ca_cert: Path, client_cert: Path, client_key: Path) -> ssl.SSLContext:
    """TLS context that trusts the run's CA and presents the admin certificate."""
    context = ssl.create_default_context(cafile=str(ca_cert))
    context.load_cert_chain(str(client_cert), str(client_key))
    return context


def unverified_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def http_get(url: str, context: ssl.SSLContext | None = None, timeout_s: float = 2.0) -> tuple[int, str]:
    """(status, body) of a GET; status 0 when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as response:
            return response.status, response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return 0, ""


def is_healthy(url: str, context: ssl.SSLContext | None = None) -> bool:
    status, body = http_get(url, context)
    if status != 200:
        return False
    if url.endswith("/health"):  # etcd answers {"health":"true",...}
        return '"health":"true"' in body.replace(" ", "")
    return True


def wait_until(
    condition: Callable[[], bool],
    timeout_s: float,
    what: str,
    *,
    interval_s: float = 0.1,
    abort: Callable[[], str | None] = lambda: None,
) -> float:
    """Poll `condition` until true; return seconds waited. `abort` returns a reason to stop early."""
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        if condition():
            return time.monotonic() - started
        reason = abort()
        if reason is not None:
            raise TimeoutError(f"gave up waiting for {what}: {reason}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s:.0f}s")
        time.sleep(interval_s)
