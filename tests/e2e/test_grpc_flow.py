"""Flow control over loopback gRPC: cancellation, queue-full, deadlines, drain, concurrency, fuzz.

A MockEngine with a per-step delay keeps requests in flight long enough to act on them.
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grok.v1 import generation_pb2 as pb
from grok_worker.client import AsyncGrokClient, GrokClient
from grok_worker.engine.api import SampledToken
from grok_worker.engine.mock import MockEngine
from grok_worker.engine.text import ByteTokenizer
from grok_worker.server.app import WorkerServer
from grok_worker.server.local import start_local_server

TOK = ByteTokenizer()


async def _wait_for(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


@pytest.fixture
async def slow() -> AsyncIterator[tuple[WorkerServer, MockEngine]]:
    engine = MockEngine(max_batch=2, max_seq_len=256, step_delay=0.02)
    srv = await start_local_server(engine, TOK, max_queue=1, metrics=True)
    yield srv, engine
    await srv.drain(0.5)


async def test_client_cancel_frees_the_slot_at_once(slow: tuple[WorkerServer, MockEngine]) -> None:
    server, engine = slow
    assert server.scheduler is not None
    async with AsyncGrokClient(f"127.0.0.1:{server.port}") as client:
        stream = client.generate_stream("a", max_tokens=200, stop_at_eos=False)
        assert isinstance(stream, AsyncGenerator)
        first = await anext(stream)
        assert first.text == "b"
        await stream.aclose()  # cancels the call
        await _wait_for(lambda: server.scheduler is not None and server.scheduler.in_flight == 0)
        steps = engine.decode_steps
        await asyncio.sleep(0.1)
        assert engine.decode_steps == steps, "no decode steps run after the only request was cancelled"
        assert (await client.generate("a", max_tokens=2)).text == "bc"


async def test_full_queue_is_resource_exhausted(slow: tuple[WorkerServer, MockEngine]) -> None:
    server, _ = slow
    async with AsyncGrokClient(f"127.0.0.1:{server.port}") as client:
        # two slots + one queue place are taken by three long requests
        calls = [
            asyncio.create_task(client.generate("a", max_tokens=30, stop_at_eos=False)) for _ in range(3)
        ]
        await _wait_for(lambda: server.scheduler is not None and server.scheduler.in_flight == 3)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await client.generate("a", max_tokens=1)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "serving.max_queue=1" in (err.value.details() or "")
        results = await asyncio.gather(*calls)
        assert all(r.usage.completion_tokens == 30 for r in results)
        assert (await client.generate("a", max_tokens=1)).text == "b"


async def test_deadline_is_honoured_and_frees_the_slot(slow: tuple[WorkerServer, MockEngine]) -> None:
    server, _ = slow
    async with AsyncGrokClient(f"127.0.0.1:{server.port}", timeout=0.2) as client:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await client.generate("a", max_tokens=200, stop_at_eos=False)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await _wait_for(lambda: server.scheduler is not None and server.scheduler.in_flight == 0)


async def test_drain_finishes_in_flight_requests_and_refuses_new_ones(
    slow: tuple[WorkerServer, MockEngine],
) -> None:
    server, _ = slow
    async with AsyncGrokClient(f"127.0.0.1:{server.port}") as client:
        running = asyncio.create_task(client.generate("a", max_tokens=10, stop_at_eos=False))
        await _wait_for(lambda: server.scheduler is not None and server.scheduler.in_flight == 1)
        drain = asyncio.create_task(server.drain(5.0))
        await _wait_for(lambda: server.state.state.name == "DRAINING")
        assert await client.health() == "NOT_SERVING"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await client.generate("a", max_tokens=1)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert (await running).text == "bcdefghijk"
        assert await drain is True


async def test_drain_past_its_grace_ends_what_is_left_unavailable(
    slow: tuple[WorkerServer, MockEngine],
) -> None:
    server, engine = slow
    async with AsyncGrokClient(f"127.0.0.1:{server.port}") as client:
        messages: list[pb.GenerateStreamResponse] = []

        async def consume() -> None:
            async for m in client.generate_stream("a", max_tokens=250, stop_at_eos=False):
                messages.append(m)

        task = asyncio.create_task(consume())
        await _wait_for(lambda: len(messages) >= 2)
        assert await server.drain(0.1) is False
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await asyncio.wait_for(task, 5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # the client knows to retry elsewhere
        assert "drain grace of 0.1s passed" in (err.value.details() or "")
        assert all(m.finish_reason == 0 for m in messages)
        steps = engine.decode_steps
        await asyncio.sleep(0.2)
        assert engine.decode_steps == steps  # the slot was freed: no more steps run for it


async def test_concurrent_streams_equal_the_same_requests_one_at_a_time() -> None:
    engine = MockEngine(max_batch=4, max_seq_len=64)
    server = await start_local_server(engine, TOK, max_queue=8)
    prompts: list[tuple[str, dict[str, object]]] = [
        ("a", {}),
        ("q", {"stop": ["v"]}),
        ("k", {"temperature": 2.0, "seed": 7}),
        ("0", {"top_p": 0.5}),
    ]
    prompts += [("m", {"temperature": 1.0, "seed": 11, "top_k": 3}), ("x", {})]
    try:
        async with AsyncGrokClient(f"127.0.0.1:{server.port}") as client:

            async def run(prompt: str, params: dict[str, object]) -> tuple[str, list[int], int]:
                messages = [m async for m in client.generate_stream(prompt, max_tokens=12, **params)]
                ids = [t for m in messages for t in m.token_ids]
                return "".join(m.text for m in messages), ids, messages[-1].finish_reason

            one_by_one = [await run(p, kw) for p, kw in prompts]
            together = await asyncio.gather(*(run(p, kw) for p, kw in prompts))
        assert list(together) == one_by_one
        assert one_by_one[0][0] == "bcdefghijklm"
    finally:
        await server.drain(1.0)


async def test_metrics_endpoint_reports_outcomes_and_latency(slow: tuple[WorkerServer, MockEngine]) -> None:
    server, _ = slow
    async with AsyncGrokClient(f"127.0.0.1:{server.port}") as client:
        await client.generate("a", max_tokens=3)
        with pytest.raises(grpc.aio.AioRpcError):
            await client.generate("a", max_tokens=-1)
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    assert 'grok_requests_total{api="grpc",outcome="length"} 1.0' in body
    assert 'grok_requests_total{api="grpc",outcome="rejected_invalid"} 1.0' in body
    assert "grok_time_to_first_token_seconds_count 1.0" in body
    assert "grok_inter_token_latency_seconds_count 2.0" in body
    assert "grok_generated_tokens_total 3.0" in body
    assert "grok_serving 1.0" in body
    assert "grok_load_progress 1.0" in body


_fields = st.fixed_dictionaries(
    {},
    optional={
        "max_tokens": st.integers(-5, 80),
        "temperature": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 3)),
        "top_p": st.one_of(st.floats(-1, 2), st.just(float("nan"))),
        "top_k": st.integers(-3, 300),
        "seed": st.integers(0, 2**64 - 1),
        "stop": st.lists(st.text(max_size=4), max_size=6),
        "stop_at_eos": st.booleans(),
        "return_logprobs": st.booleans(),
        "add_bos": st.booleans(),
    },
)
_prompts = st.one_of(st.text(max_size=40), st.lists(st.integers(-3, 300), max_size=40))


def test_fuzzed_requests_never_break_the_server() -> None:
    async def start() -> WorkerServer:
        return await start_local_server(MockEngine(max_batch=4, max_seq_len=64), TOK, max_queue=8)

    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(start())
    target = f"127.0.0.1:{server.port}"
    try:
        with GrokClient(target, timeout=10) as client:

            @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
            @given(prompt=_prompts, fields=_fields)
            def check(prompt: str | list[int], fields: dict[str, object]) -> None:
                def call() -> grpc.StatusCode | None:
                    try:
                        response = client.generate(prompt, **fields)
                    except grpc.RpcError as exc:
                        return exc.code()
                    assert response.finish_reason != pb.FINISH_REASON_UNSPECIFIED
                    return None

                code = loop.run_until_complete(asyncio.to_thread(call))
                assert code in (None, grpc.StatusCode.INVALID_ARGUMENT)

            check()

            def healthy() -> tuple[str, str]:
                return client.health(), client.generate("a", max_tokens=3).text

            assert loop.run_until_complete(asyncio.to_thread(healthy)) == ("SERVING", "bcd")
    finally:
        loop.run_until_complete(server.drain(1.0))
        loop.close()


class BreakingEngine(MockEngine):
    """Fails its third decode step after warmup, like a device error."""

    armed = False

    def decode(self) -> list[SampledToken]:
        if self.armed and self.decode_steps >= 2:
            raise RuntimeError("device lost")
        return super().decode()


async def test_an_engine_failure_is_unavailable_and_not_serving() -> None:
    engine = BreakingEngine(max_batch=2, max_seq_len=64)
    server = await start_local_server(engine, TOK)
    engine.armed = True
    try:
        async with AsyncGrokClient(f"127.0.0.1:{server.port}") as client:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await client.generate("a", max_tokens=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "device lost" in (err.value.details() or "")
            await _wait_for(lambda: server.failed.is_set())
            assert await client.health() == "NOT_SERVING"
            info = await client.info()
            assert info.load_state == pb.LOAD_STATE_FAILED
            assert "device lost" in info.load_message
            with pytest.raises(grpc.aio.AioRpcError) as again:
                await client.generate("a", max_tokens=1)
            assert again.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.drain(0.5)
