"""TLS, mutual TLS and bearer tokens on the worker's gRPC and HTTP APIs, over real loopback sockets.

The server runs the hand-checkable MockEngine in this process (the next token is the next byte), so
"abc" continues with "def..."; certificates are made per test session with `cryptography`
(tests/pki.py), the token directory is written the way kubelet writes a mounted Secret.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from grok_worker.client import AsyncGrokClient, ClientSecurity
from grok_worker.contract import TLSSection
from grok_worker.engine.mock import MockEngine
from grok_worker.engine.text import ByteTokenizer
from grok_worker.server.app import WorkerServer
from grok_worker.server.local import start_local_server
from grok_worker.server.tls import read_tls
from grok_worker.server.tokens import TokenStore
from tests.pki import Pki, kubelet_secret_dir, make_pki

GOOD, OTHER, NEW = "s3cret-token-alpha", "s3cret-token-beta", "s3cret-token-gamma"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


async def serve(
    pki: Pki | None = None, mutual: bool = False, tokens: TokenStore | None = None, **kw: bool
) -> WorkerServer:
    tls = None
    if pki is not None:
        section = TLSSection(
            cert_file=str(pki.server_cert),
            key_file=str(pki.server_key),
            client_ca_file=str(pki.ca) if mutual else "",
        )
        tls = read_tls(section)
    engine = MockEngine(max_batch=2, max_seq_len=64, prefill_buckets=(16,))
    return await start_local_server(engine, ByteTokenizer(), tls=tls, tokens=tokens, **kw)


@pytest.fixture
async def tls_server(pki: Pki) -> AsyncIterator[WorkerServer]:
    server = await serve(pki, http=True)
    yield server
    await server.drain(1.0)


@pytest.fixture
async def mtls_server(pki: Pki) -> AsyncIterator[WorkerServer]:
    server = await serve(pki, mutual=True, http=True)
    yield server
    await server.drain(1.0)


@pytest.fixture
def token_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tokens"
    kubelet_secret_dir(folder, {"alpha": GOOD + "\n", "beta": OTHER})
    return folder


@pytest.fixture
async def token_server(token_dir: Path) -> AsyncIterator[WorkerServer]:
    server = await serve(tokens=TokenStore(token_dir, poll_seconds=0.05), http=True)
    yield server
    await server.drain(1.0)


async def generate(port: int, security: ClientSecurity | None) -> str:
    async with AsyncGrokClient(f"localhost:{port}", timeout=10, security=security) as client:
        return (await client.generate("abc", max_tokens=3)).text


async def status_of(port: int, security: ClientSecurity | None) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await generate(port, security)
    return err.value.code()


def https(pki: Pki, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca))
    if client is not None:
        context.load_cert_chain(*client)
    return context


async def post_completion(url: str, context: ssl.SSLContext | None, token: str | None) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    body = {"model": "mock", "prompt": "abc", "max_tokens": 3, "temperature": 0}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/completions", json=body, headers=headers, ssl=context or False) as response,
    ):
        return response.status, await response.json()


# ---- TLS ------------------------------------------------------------------------------------------
async def test_tls_serves_grpc_and_http_to_clients_that_trust_the_ca(
    pki: Pki, tls_server: WorkerServer
) -> None:
    assert await generate(tls_server.port, ClientSecurity(ca=str(pki.ca))) == "def"
    status, body = await post_completion(f"https://localhost:{tls_server.http_port}", https(pki), None)
    assert (status, body["choices"][0]["text"]) == (200, "def")


async def test_tls_refuses_plaintext_and_clients_that_trust_another_ca(
    pki: Pki, tls_server: WorkerServer
) -> None:
    assert await status_of(tls_server.port, None) == grpc.StatusCode.UNAVAILABLE
    assert (
        await status_of(tls_server.port, ClientSecurity(ca=str(pki.other_ca))) == grpc.StatusCode.UNAVAILABLE
    )
    with pytest.raises(aiohttp.ClientError):
        await post_completion(f"http://localhost:{tls_server.http_port}", None, None)
    wrong = ssl.create_default_context(cafile=str(pki.other_ca))
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await post_completion(f"https://localhost:{tls_server.http_port}", wrong, None)


# ---- mutual TLS -----------------------------------------------------------------------------------
async def test_mtls_accepts_a_client_certificate_from_its_ca(pki: Pki, mtls_server: WorkerServer) -> None:
    good = ClientSecurity(ca=str(pki.ca), cert=str(pki.client_cert), key=str(pki.client_key))
    assert await generate(mtls_server.port, good) == "def"
    context = https(pki, (pki.client_cert, pki.client_key))
    status, body = await post_completion(f"https://localhost:{mtls_server.http_port}", context, None)
    assert (status, body["choices"][0]["text"]) == (200, "def")


async def test_mtls_refuses_no_certificate_and_one_from_another_ca(
    pki: Pki, mtls_server: WorkerServer
) -> None:
    none = ClientSecurity(ca=str(pki.ca))
    stranger = ClientSecurity(ca=str(pki.ca), cert=str(pki.other_client_cert), key=str(pki.other_client_key))
    assert await status_of(mtls_server.port, none) == grpc.StatusCode.UNAVAILABLE
    assert await status_of(mtls_server.port, stranger) == grpc.StatusCode.UNAVAILABLE
    url = f"https://localhost:{mtls_server.http_port}"
    for context in (https(pki), https(pki, (pki.other_client_cert, pki.other_client_key))):
        with pytest.raises(aiohttp.ClientError):
            await post_completion(url, context, None)


async def test_curl_speaks_mutual_tls_to_the_http_api(pki: Pki, mtls_server: WorkerServer) -> None:
    curl = shutil.which("curl")
    assert curl, "curl is needed for this test"
    url = f"https://localhost:{mtls_server.http_port}/v1/models"
    base = [curl, "-sS", "--cacert", str(pki.ca), url]

    async def run(*extra: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(*base, *extra, stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode()

    code, out = await run("--cert", str(pki.client_cert), "--key", str(pki.client_key))
    assert code == 0
    assert json.loads(out)["data"][0]["id"] == "mock"
    code, _ = await run()
    assert code != 0  # the server ends the handshake without a client certificate


# ---- bearer tokens --------------------------------------------------------------------------------
async def test_tokens_good_bad_and_missing_over_grpc(token_server: WorkerServer) -> None:
    port = token_server.port
    assert await generate(port, ClientSecurity(token=GOOD)) == "def"
    assert await generate(port, ClientSecurity(token=OTHER)) == "def"
    assert await status_of(port, ClientSecurity(token="nope")) == grpc.StatusCode.UNAUTHENTICATED
    assert await status_of(port, ClientSecurity(token=GOOD[:-1])) == grpc.StatusCode.UNAUTHENTICATED
    assert await status_of(port, None) == grpc.StatusCode.UNAUTHENTICATED
    async with AsyncGrokClient(f"127.0.0.1:{port}", timeout=10) as client:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in client.generate_stream("abc", max_tokens=2):
                pass
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "bearer token" in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await client.info()
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_health_and_reflection_need_no_token(token_server: WorkerServer) -> None:
    async with AsyncGrokClient(f"127.0.0.1:{token_server.port}", timeout=10) as client:
        assert await client.health() == "SERVING"
        stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        replies = [reply async for reply in stub.ServerReflectionInfo(iter([request]))]
    names = {s.name for s in replies[0].list_services_response.service}
    assert "grok.v1.GenerationService" in names


async def test_tokens_over_http_401_in_openai_shape_and_health_exempt(token_server: WorkerServer) -> None:
    url = f"http://127.0.0.1:{token_server.http_port}"
    status, body = await post_completion(url, None, GOOD)
    assert (status, body["choices"][0]["text"]) == (200, "def")
    for token in ("wrong", None):
        status, body = await post_completion(url, None, token)
        assert status == 401
        assert body["error"]["code"] == "invalid_api_key"
        assert "bearer token" in body["error"]["message"]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/health") as response:
            assert response.status == 200
        async with session.get(f"{url}/v1/models", headers={"Authorization": "Basic " + GOOD}) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_tokens_reload_when_kubelet_swaps_the_secret(
    token_server: WorkerServer, token_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = token_server.port
    assert await generate(port, ClientSecurity(token=GOOD)) == "def"
    kubelet_secret_dir(token_dir, {"gamma": NEW}, generation=2)
    codes: set[grpc.StatusCode] = set()
    for _ in range(200):  # the store looks at the directory at most every 0.05 s
        try:
            await generate(port, ClientSecurity(token=NEW))
            break
        except grpc.aio.AioRpcError as err:
            codes.add(err.code())
            await asyncio.sleep(0.05)
    else:
        pytest.fail(f"the new token was never accepted ({codes})")
    assert await status_of(port, ClientSecurity(token=GOOD)) == grpc.StatusCode.UNAUTHENTICATED
    status, _ = await post_completion(f"http://127.0.0.1:{token_server.http_port}", None, NEW)
    assert status == 200
    for secret in (GOOD, OTHER, NEW):
        assert secret not in caplog.text


async def test_tls_and_tokens_together(pki: Pki, token_dir: Path) -> None:
    server = await serve(pki, mutual=True, tokens=TokenStore(token_dir), http=True)
    try:
        client = ClientSecurity(ca=str(pki.ca), cert=str(pki.client_cert), key=str(pki.client_key))
        assert await status_of(server.port, client) == grpc.StatusCode.UNAUTHENTICATED
        with_token = ClientSecurity(ca=client.ca, cert=client.cert, key=client.key, token=GOOD)
        assert await generate(server.port, with_token) == "def"
        assert GOOD not in repr(with_token)
    finally:
        await server.drain(1.0)


# ---- the health-only port and the metrics port ----------------------------------------------------
async def test_the_health_port_serves_only_health_in_plaintext(pki: Pki, token_dir: Path) -> None:
    server = await serve(pki, mutual=True, tokens=TokenStore(token_dir), health_port=True)
    try:
        assert server.health_port is not None
        async with AsyncGrokClient(f"127.0.0.1:{server.health_port}", timeout=10) as client:
            assert await client.health() == "SERVING"
            assert await client.health("grok.v1.GenerationService") == "SERVING"
            for call in (client.info(), client.generate("abc", max_tokens=2)):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call
                assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
            stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                _ = [r async for r in stub.ServerReflectionInfo(iter([request]))]
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
            await server.fail("a test failure")  # one health state for both ports
            assert await client.health() == "NOT_SERVING"
    finally:
        await server.drain(1.0)


async def test_metrics_bind_where_told_and_answer_only_metrics() -> None:
    server = await serve(metrics=True)  # bind_host 127.0.0.1
    try:
        port = server.metrics_port
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                assert response.status == 200
                assert "grok_serving 1.0" in await response.text()
            for path in ("/", "/metricsx", "/v1/models", "/metrics/extra"):
                async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                    assert response.status == 404, path
            with pytest.raises(aiohttp.ClientConnectorError):
                await session.get(f"http://127.0.0.2:{port}/metrics")  # another loopback address
    finally:
        await server.drain(1.0)
