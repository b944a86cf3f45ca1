"""Status codes a gRPC client can act on, over real loopback sockets (MockEngine):
malformed bytes, loading, a full queue's retry delay, health List, reflection v1 and v1alpha, and
tokenizing that never runs on the event loop."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Sequence

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from grok.v1 import generation_pb2 as pb
from grok_worker.client import AsyncGrokClient
from grok_worker.engine.mock import MockEngine
from grok_worker.engine.text import ByteTokenizer
from grok_worker.server.app import ServerOptions, WorkerServer
from grok_worker.server.local import start_local_server
from grok_worker.server.wire import STATUS_DETAILS_KEY

TOK = ByteTokenizer()
GENERATE = "/grok.v1.GenerationService/Generate"


class RecordingTokenizer(ByteTokenizer):
    """ByteTokenizer that records which thread encoded what."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def encode(self, text: str) -> list[int]:
        self.calls.append((threading.current_thread().name, len(text)))
        return super().encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return super().decode(ids)


@pytest.fixture
async def server() -> AsyncIterator[WorkerServer]:
    srv = await start_local_server(MockEngine(max_batch=4, max_seq_len=64), RecordingTokenizer(), max_queue=4)
    yield srv
    await srv.drain(1.0)


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (payloads here are shorter than 128 bytes)."""
    return bytes([number << 3 | 2, len(payload)]) + payload


@pytest.mark.parametrize(
    "raw",
    [_field(1, b"\xff\xfe bad utf-8"), b"\xff\xff\xff\xff", _field(2, b"\x08")],
    ids=["invalid-utf8", "corrupt", "truncated"],
)
async def test_malformed_bytes_are_invalid_argument_without_a_traceback(
    server: WorkerServer, raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = channel.unary_unary(GENERATE, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call(raw, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = err.value.details() or ""
    assert details.startswith("the request is not a valid grok.v1.GenerateRequest message")
    assert "Traceback" not in details
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    async with AsyncGrokClient(f"127.0.0.1:{server.port}") as client:  # and it still serves
        assert (await client.generate("a", max_tokens=2)).text == "bc"


async def test_every_rpc_but_model_info_is_unavailable_while_loading() -> None:
    server = WorkerServer(pb.ModelInfo(preset="mock"), ServerOptions(bind_host="127.0.0.1", http_port=0))
    await server.start()
    try:
        async with AsyncGrokClient(f"127.0.0.1:{server.port}", timeout=10) as client:
            calls = {
                "Generate": client.generate("a", max_tokens=1),
                "GenerateStream": _drain(client.generate_stream("a", max_tokens=1)),
                "Tokenize": client.tokenize("a"),
                "Detokenize": client.detokenize([5]),
            }
            for name, call in calls.items():
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE, name
                assert "LOADING" in (err.value.details() or ""), name
            assert (await client.info()).load_state == pb.LOAD_STATE_LOADING
            assert await client.health() == "NOT_SERVING"
    finally:
        await server.drain(0.1)


async def _drain(stream: AsyncIterator[pb.GenerateStreamResponse]) -> None:
    async for _ in stream:
        pass


async def test_a_full_queue_carries_a_retry_delay_in_google_rpc_retry_info() -> None:
    server = await start_local_server(
        MockEngine(max_batch=1, max_seq_len=64, step_delay=0.02), TOK, max_queue=0
    )
    try:
        async with AsyncGrokClient(f"127.0.0.1:{server.port}", timeout=10) as client:
            busy = asyncio.create_task(client.generate("a", max_tokens=20, stop_at_eos=False))
            while server.scheduler is None or server.scheduler.in_flight == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await client.generate("b", max_tokens=2)
            await busy
    finally:
        await server.drain(1.0)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailer = dict(err.value.trailing_metadata() or ())
    status = status_pb2.Status.FromString(trailer[STATUS_DETAILS_KEY])
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    retry = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(retry)
    delay = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
    assert 0.1 <= delay <= 60


async def test_health_list_names_every_service_and_its_status(server: WorkerServer) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.List(health_pb2.HealthListRequest(), timeout=10)
    statuses = {name: r.status for name, r in response.statuses.items()}
    serving = health_pb2.HealthCheckResponse.SERVING
    assert statuses == {"": serving, "grok.v1.GenerationService": serving}


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
async def test_reflection_lists_the_services_in_both_versions(server: WorkerServer, version: str) -> None:
    method = f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = channel.stream_stream(
            method,
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="grok.v1.GenerationService"),
        ]
        responses = [r async for r in call(iter(requests), timeout=10)]
    names = {s.name for s in responses[0].list_services_response.service}
    assert {"grok.v1.GenerationService", "grpc.health.v1.Health"} <= names
    assert {"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} <= names
    assert responses[1].file_descriptor_response.file_descriptor_proto  # the proto, for grpcurl describe


async def test_prompts_are_tokenized_off_the_event_loop_and_oversized_text_never_is(
    server: WorkerServer,
) -> None:
    tokenizer = server.scheduler.tokenizer if server.scheduler else None
    assert isinstance(tokenizer, RecordingTokenizer)
    async with AsyncGrokClient(f"127.0.0.1:{server.port}", timeout=10) as client:
        assert (await client.generate("abc", max_tokens=2)).text == "de"
        assert await client.tokenize("ab") == TOK.encode("ab")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await client.generate("x" * 3_500_000, max_tokens=2)  # under gRPC's 4 MB message limit
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "longer than any prompt of 32 tokens" in (err.value.details() or "")
    assert [length for _, length in tokenizer.calls] == [3, 2]  # the big text was never tokenized
    assert all(name.startswith("text") for name, _ in tokenizer.calls)
