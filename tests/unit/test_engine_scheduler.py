"""The continuous-batching scheduler over the MockEngine, without gRPC."""

from __future__ import annotations

import asyncio

import pytest

from grok_worker.engine.api import SamplingParams, bucket_for, default_buckets
from grok_worker.engine.mock import MockEngine, next_token
from grok_worker.engine.requests import (
    FinishReason,
    GenerationRequest,
    NotAcceptingError,
    QueueFullError,
    TokenEvent,
)
from grok_worker.engine.scheduler import Scheduler
from grok_worker.engine.text import ByteTokenizer
from grok_worker.model_config import EOS_ID

TOK = ByteTokenizer()


def req(prompt: str, max_tokens: int = 5, **kw: object) -> GenerationRequest:
    return GenerationRequest(tuple(TOK.encode(prompt)), max_tokens, **kw)  # type: ignore[arg-type]


async def collect(handle_events: object) -> list[TokenEvent]:
    return [e async for e in handle_events]  # type: ignore[attr-defined]


def test_mock_model_is_the_next_byte_and_z_ends() -> None:
    assert next_token(TOK.encode("a")[0]) == TOK.encode("b")[0]
    assert next_token(TOK.encode("z")[0]) == EOS_ID
    assert next_token(EOS_ID) == TOK.encode("a")[0]


def test_buckets() -> None:
    assert default_buckets(100) == (16, 32, 64, 100)
    assert default_buckets(8) == (8,)
    assert bucket_for(17, (16, 32)) == 32
    with pytest.raises(ValueError, match="longer than the largest prefill bucket 32"):
        bucket_for(33, (16, 32))


async def test_more_requests_than_slots_share_them_and_each_gets_its_own_tokens() -> None:
    engine = MockEngine(max_batch=2, max_seq_len=64)
    scheduler = Scheduler(engine, TOK, max_queue=8)
    scheduler.start()
    try:
        handles = [scheduler.submit(req(p, 4)) for p in "aehq0"]
        results = await asyncio.gather(*(collect(h.events()) for h in handles))
        texts = ["".join(e.text for e in events) for events in results]
        assert texts == ["bcde", "fghi", "ijkl", "rstu", "1234"]
        assert all(events[-1].finish is FinishReason.LENGTH for events in results)
        # 5 requests x 4 tokens on 2 slots: the first token of each comes from its prefill
        assert engine.prefills == 5
        assert engine.decode_steps <= 3 * 3 + 1
    finally:
        await scheduler.stop()


async def test_queue_bound_and_cancel_of_a_queued_request() -> None:
    engine = MockEngine(max_batch=1, max_seq_len=256, step_delay=0.01)
    scheduler = Scheduler(engine, TOK, max_queue=1)
    scheduler.start()
    try:
        running = scheduler.submit(req("a", 50, stop_at_eos=False))
        queued = scheduler.submit(req("b", 3))
        with pytest.raises(QueueFullError, match="max_queue=1"):
            scheduler.submit(req("c", 3))
        queued.cancel()
        events = await collect(queued.events())
        assert [e.finish for e in events] == [FinishReason.CANCELLED]
        running.cancel()
        assert (await collect(running.events()))[-1].finish is FinishReason.CANCELLED
        again = await collect(scheduler.submit(req("b", 3)).events())
        assert "".join(e.text for e in again) == "cde"
    finally:
        await scheduler.stop()


async def test_sampled_requests_are_reproducible_alone_or_batched() -> None:
    engine = MockEngine(max_batch=3, max_seq_len=64)
    scheduler = Scheduler(engine, TOK, max_queue=8)
    scheduler.start()
    sampling = SamplingParams(temperature=3.0, seed=42)
    try:
        alone = await collect(scheduler.submit(req("m", 8, sampling=sampling, stop_at_eos=False)).events())
        handles = [scheduler.submit(req(p, 8, stop_at_eos=False)) for p in "xy"]
        handles.append(scheduler.submit(req("m", 8, sampling=sampling, stop_at_eos=False)))
        batched = await asyncio.gather(*(collect(h.events()) for h in handles))
        assert [e.token for e in batched[2]] == [e.token for e in alone]
    finally:
        await scheduler.stop()


class FailingEngine(MockEngine):
    def decode(self) -> list:  # type: ignore[type-arg]
        raise RuntimeError("device lost")


async def test_an_engine_failure_ends_every_request_with_an_error_and_stops_accepting() -> None:
    failures: list[str] = []
    scheduler = Scheduler(FailingEngine(max_batch=2), TOK, max_queue=2, on_failure=failures.append)
    scheduler.start()
    events = await collect(scheduler.submit(req("a", 5)).events())
    assert events[-1].finish is FinishReason.ERROR
    assert "device lost" in events[-1].error
    assert failures
    assert "device lost" in failures[0]
    with pytest.raises(NotAcceptingError, match="device lost"):
        scheduler.submit(req("a"))
    await scheduler.stop()


async def test_a_long_prompt_is_prefilled_in_chunks_each_carried_by_the_running_streams_decode_step() -> None:
    engine = MockEngine(max_batch=4, max_seq_len=64, prefill_buckets=(8, 16, 32), prefill_chunk=8)
    scheduler = Scheduler(engine, TOK, max_queue=8)
    scheduler.start()
    try:
        running = scheduler.submit(req("a", 20, stop_at_eos=False))
        events = running.events()
        await anext(events)  # the running stream holds a slot and is decoding
        engine.ops.clear()
        long = scheduler.submit(req("A" * 29 + "k", 3))  # 30 tokens: 4 chunks of 8
        text = "".join(e.text for e in await collect(long.events()))
        assert text == "lmn"  # the same continuation as an unchunked prefill
        ops = list(engine.ops)
        # each chunk rides in the running stream's decode step: one step per chunk, none alone
        assert ops[:4] == ["decode+chunk"] * 4
        assert "chunk" not in ops
        assert "prefill" not in ops
        assert set(ops[4:]) == {"decode"}
        rest = "".join([e.text async for e in events])
        assert rest == "cdefghijklmnopqrstu"  # the running stream lost nothing
    finally:
        await scheduler.stop()


async def test_short_prompts_admitted_in_one_step_stay_within_one_chunk_of_prefill_tokens() -> None:
    engine = MockEngine(max_batch=4, max_seq_len=64, prefill_buckets=(8, 16, 32), prefill_chunk=16)
    scheduler = Scheduler(engine, TOK, max_queue=8)
    scheduler.start()
    try:
        with scheduler._cv:  # the engine thread sees all four arrive at once
            handles = [scheduler.submit(req(p, 2)) for p in "abcd"]  # bucket 8 each: two fit in 16
        results = await asyncio.gather(*(collect(h.events()) for h in handles))
        assert ["".join(e.text for e in r) for r in results] == ["bc", "cd", "de", "ef"]
        ops = list(engine.ops)
        assert ops[:3] == ["prefill", "prefill", "decode"]
    finally:
        await scheduler.stop()


async def test_cancelling_a_request_during_its_chunked_prefill_frees_its_slot() -> None:
    engine = MockEngine(
        max_batch=1, max_seq_len=64, prefill_buckets=(8, 32), prefill_chunk=8, step_delay=0.01
    )
    scheduler = Scheduler(engine, TOK, max_queue=8)
    scheduler.start()
    try:
        long = scheduler.submit(req("A" * 30, 3))
        while "chunk" not in engine.ops:  # noqa: ASYNC110 (set by the engine thread, not an asyncio task)
            await asyncio.sleep(0.005)
        long.cancel()
        events = await collect(long.events())
        assert events[-1].finish is FinishReason.CANCELLED
        after = await collect(scheduler.submit(req("a", 2)).events())  # the one slot is free again
        assert "".join(e.text for e in after) == "bc"
    finally:
        await scheduler.stop()


async def test_a_full_queue_suggests_a_retry_delay() -> None:
    engine = MockEngine(max_batch=1, max_seq_len=64, step_delay=0.01)
    scheduler = Scheduler(engine, TOK, max_queue=0)
    scheduler.start()
    try:
        first = scheduler.submit(req("a", 3))
        with pytest.raises(QueueFullError, match=r"retry in \d") as err:
            scheduler.submit(req("b", 3))
        assert 0.1 <= err.value.retry_after <= 60
        await collect(first.events())
    finally:
        await scheduler.stop()


async def test_a_short_prompt_in_a_bucket_longer_than_a_chunk_costs_one_chunk() -> None:
    engine = MockEngine(max_batch=2, max_seq_len=64, prefill_buckets=(16, 32), prefill_chunk=8)
    scheduler = Scheduler(engine, TOK, max_queue=4)
    scheduler.start()
    try:
        events = await collect(scheduler.submit(req("abc", 2)).events())  # 3 tokens, bucket 16 > 8
        assert "".join(e.text for e in events) == "de"
        assert engine.ops[0] == "chunk"
        assert "prefill" not in engine.ops
    finally:
        await scheduler.stop()
