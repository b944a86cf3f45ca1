"""A renewed TLS Secret is served without a restart, on the gRPC and the HTTP API, over real sockets.

The worker runs the MockEngine in this process with its certificate in a folder written the way
kubelet updates a mounted Secret (tests/pki.py `kubelet_secret_dir`). Which certificate a port
serves is read from a plain TLS handshake (ALPN h2, which the gRPC port needs), and compared by
SHA-256 with the PEM the test wrote; a real generation call over each API checks that the renewed
certificate works end to end. A follower host's TLS health port follows renewals the same way.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from grok_devcluster.pki import new_ca
from grok_worker.client import AsyncGrokClient, ClientSecurity
from grok_worker.contract import TLSSection
from grok_worker.engine.mock import MockEngine
from grok_worker.engine.text import ByteTokenizer
from grok_worker.server.app import WorkerServer
from grok_worker.server.cert_reload import ServedCertificate
from grok_worker.server.follower import _health_servers
from grok_worker.server.local import free_port, start_local_server
from grok_worker.server.security import Security
from grok_worker.server.tls import read_tls
from grok_worker.server.wire import HealthServicer
from tests.pki import CA, client_pair, digest, kubelet_secret_dir, pem, served, server_pair

#: Seconds between the server's checks of its TLS files in these tests.
POLL = 0.05


def write_secret(folder: Path, ca: CA, pair: tuple[str, str], generation: int, mutual: bool) -> None:
    files = {"tls.crt": pair[0], "tls.key": pair[1]}
    if mutual:
        files["ca.crt"] = pem(ca)[0]
    kubelet_secret_dir(folder, files, generation)


async def wait_served(
    port: int, cert_pem: str, client: tuple[Path, Path] | None = None, seconds: float = 10.0
) -> None:
    want = digest(cert_pem)
    for _ in range(int(seconds / POLL)):
        if await asyncio.to_thread(served, "127.0.0.1", port, client) == want:
            return
        await asyncio.sleep(POLL)
    raise AssertionError(f"port {port} still serves the old certificate after {seconds}s")


async def generate(port: int, security: ClientSecurity) -> str:
    async with AsyncGrokClient(f"localhost:{port}", timeout=10, security=security) as client:
        return (await client.generate("abc", max_tokens=3)).text


async def http_generate(port: int, ca_pem: str, client: tuple[Path, Path] | None) -> str:
    context = ssl.create_default_context(cadata=ca_pem)
    if client is not None:
        context.load_cert_chain(*client)
    body = {"model": "mock", "prompt": "abc", "max_tokens": 3, "temperature": 0}
    url = f"https://localhost:{port}/v1/completions"
    async with aiohttp.ClientSession() as session, session.post(url, json=body, ssl=context) as response:
        assert response.status == 200
        return str((await response.json())["choices"][0]["text"])


def section(folder: Path, mutual: bool) -> TLSSection:
    return TLSSection(
        cert_file=str(folder / "tls.crt"),
        key_file=str(folder / "tls.key"),
        client_ca_file=str(folder / "ca.crt") if mutual else "",
    )


async def start(folder: Path, mutual: bool) -> WorkerServer:
    engine = MockEngine(max_batch=2, max_seq_len=64, prefill_buckets=(16,))
    return await start_local_server(
        engine, ByteTokenizer(), tls=read_tls(section(folder, mutual)), http=True, tls_poll_seconds=POLL
    )


def trusted(folder: Path, ca: CA) -> str:
    """A file holding `ca`'s certificate, for the gRPC client."""
    path = folder.parent / f"trusted-{digest(pem(ca)[0])[:8]}.crt"
    path.write_text(pem(ca)[0])
    return str(path)


@pytest.fixture
def ca() -> CA:
    return new_ca("grok test CA")


@pytest.fixture
async def server(tmp_path: Path, ca: CA) -> AsyncIterator[tuple[WorkerServer, Path]]:
    folder = tmp_path / "tls"
    write_secret(folder, ca, server_pair(ca), 1, mutual=False)
    worker = await start(folder, mutual=False)
    yield worker, folder
    await worker.drain(1.0)


async def test_a_renewed_certificate_is_served_on_both_apis_without_a_restart(
    server: tuple[WorkerServer, Path], ca: CA, caplog: pytest.LogCaptureFixture
) -> None:
    worker, folder = server
    ca_pem = pem(ca)[0]
    first = (folder / "tls.crt").read_text()
    assert worker.http_port is not None
    for port in (worker.port, worker.http_port):
        assert await asyncio.to_thread(served, "127.0.0.1", port) == digest(first)

    renewed = server_pair(ca)
    with caplog.at_level(logging.INFO, logger="grok_worker.server.cert_reload"):
        write_secret(folder, ca, renewed, 2, mutual=False)
        await wait_served(worker.port, renewed[0])
        await wait_served(worker.http_port, renewed[0])
    assert worker.certificate is not None
    assert worker.certificate.generation == 1
    hexes = digest(renewed[0]).upper()
    openssl_style = ":".join(hexes[i : i + 2] for i in range(0, len(hexes), 2))
    assert (
        f"serving the renewed TLS certificate from {folder / 'tls.crt'} (SHA-256 {openssl_style})"
        in caplog.text
    )
    assert await generate(worker.port, ClientSecurity(ca=trusted(folder, ca))) == "def"
    assert await http_generate(worker.http_port, ca_pem, None) == "def"


async def test_files_that_do_not_match_leave_the_last_good_certificate_served(
    server: tuple[WorkerServer, Path], ca: CA, caplog: pytest.LogCaptureFixture
) -> None:
    worker, folder = server
    first = (folder / "tls.crt").read_text()
    certificate = worker.certificate
    assert certificate is not None
    assert worker.http_port is not None
    certificate.poll_seconds = 3600.0  # the test drives the checks itself from here on
    await asyncio.sleep(2 * POLL)
    renewed, other = server_pair(ca), server_pair(ca)
    with caplog.at_level(logging.WARNING, logger="grok_worker.server.cert_reload"):
        write_secret(folder, ca, (renewed[0], other[1]), 2, mutual=False)  # a certificate with another's key
        assert not certificate.check()
        assert not certificate.check()  # the same files again: not re-read, not logged again
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "security.tls.cert_file / key_file" in warnings[0]
    assert "are not a matching certificate and key" in warnings[0]
    assert "serving the last good ones" in warnings[0]
    for port in (worker.port, worker.http_port):
        assert await asyncio.to_thread(served, "127.0.0.1", port) == digest(first)
    assert await generate(worker.port, ClientSecurity(ca=trusted(folder, ca))) == "def"

    write_secret(folder, ca, renewed, 3, mutual=False)  # the key catches up
    assert certificate.check()
    for port in (worker.port, worker.http_port):
        assert await asyncio.to_thread(served, "127.0.0.1", port) == digest(renewed[0])


async def test_a_renewed_client_ca_admits_its_clients_on_both_apis(tmp_path: Path) -> None:
    old, new = new_ca("grok test CA"), new_ca("grok test CA, renewed")
    folder = tmp_path / "tls"
    write_secret(folder, old, server_pair(old), 1, mutual=True)
    worker = await start(folder, mutual=True)
    try:
        assert worker.http_port is not None
        client_dir = tmp_path / "client"
        client_dir.mkdir()
        cert, key = client_pair(new)
        (client_dir / "me.crt").write_text(cert)
        (client_dir / "me.key").write_text(key)
        me = (client_dir / "me.crt", client_dir / "me.key")
        security = ClientSecurity(ca=trusted(folder, new), cert=str(me[0]), key=str(me[1]))

        renewed = server_pair(new)
        write_secret(folder, new, renewed, 2, mutual=True)  # cert-manager re-issued from a new CA
        await wait_served(worker.port, renewed[0], me)
        await wait_served(worker.http_port, renewed[0], me)
        assert await generate(worker.port, security) == "def"
        assert await http_generate(worker.http_port, pem(new)[0], me) == "def"
    finally:
        await worker.drain(1.0)


async def test_a_followers_tls_port_serves_the_renewed_certificate(tmp_path: Path) -> None:
    ca = new_ca("grok test CA")
    folder = tmp_path / "tls"
    first = server_pair(ca)
    write_secret(folder, ca, first, 1, mutual=False)
    tls = read_tls(section(folder, mutual=False))
    assert tls is not None
    security = Security(tls, None, None, "127.0.0.1", None, "127.0.0.1", "127.0.0.1")
    certificate = ServedCertificate(tls, poll_seconds=3600.0)
    port = free_port()
    servers = await _health_servers(HealthServicer(), port, security, certificate)
    try:
        assert await asyncio.to_thread(served, "127.0.0.1", port) == digest(first[0])
        renewed = server_pair(ca)
        write_secret(folder, ca, renewed, 2, mutual=False)
        assert certificate.check()
        assert await asyncio.to_thread(served, "127.0.0.1", port) == digest(renewed[0])
    finally:
        await asyncio.gather(*(server.stop(0) for server in servers))
