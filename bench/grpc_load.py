"""Client-side load for the serving benchmarks: streams over real gRPC, timed per token.

Talks to a running worker through the generated `grok.v1` stubs (no client-library layer in
between, so what is timed is the server plus the wire). Each streamed request yields a `Trace`
(send time, arrival time of every token) from which the benchmarks derive tokens/s, per-token time,
time to first token and inter-token latency. Requests use token-id prompts, greedy sampling and
`stop_at_eos=False`, so every request produces exactly `max_tokens` tokens whatever the weights.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from dataclasses import dataclass, field

import grpc

from grok.v1 import generation_pb2 as pb
from grok.v1 import generation_pb2_grpc as pb_grpc
from grok_worker.model_config import FIRST_ORDINARY_ID

#: gRPC deadline of one streamed request: generous, so only a hung server trips it.
STREAM_DEADLINE_SECONDS = 1800.0


@dataclass
class Trace:
    sent: float
    #: perf_counter time at which each token arrived (a message may carry several tokens).
    token_times: list[float] = field(default_factory=list)
    finish_reason: int = 0

    @property
    def ttft(self) -> float:
        return self.token_times[0] - self.sent

    @property
    def gaps(self) -> list[float]:
        """Inter-token times (tokens arriving in one message count as 0 apart)."""
        t = self.token_times
        return [b - a for a, b in itertools.pairwise(t)]


def request(prompt: list[int], max_tokens: int) -> pb.GenerateRequest:
    return pb.GenerateRequest(
        token_ids=pb.TokenIds(ids=prompt),
        max_tokens=max_tokens,
        temperature=0.0,
        stop_at_eos=False,
        return_token_ids=True,
    )


def prompt_ids(length: int, vocab_size: int, seed: int) -> list[int]:
    """A reproducible prompt of ordinary token ids (the special ids lie below FIRST_ORDINARY_ID)."""
    rng = random.Random(seed)
    return [rng.randrange(FIRST_ORDINARY_ID, vocab_size) for _ in range(length)]


async def stream_one(stub: pb_grpc.GenerationServiceStub, req: pb.GenerateRequest) -> Trace:
    trace = Trace(sent=time.perf_counter())
    async for msg in stub.GenerateStream(req, timeout=STREAM_DEADLINE_SECONDS):
        now = time.perf_counter()
        trace.token_times.extend([now] * len(msg.token_ids))
        if msg.finish_reason:
            trace.finish_reason = msg.finish_reason
    expected = req.max_tokens
    if len(trace.token_times) != expected:
        raise RuntimeError(
            f"stream returned {len(trace.token_times)} tokens, expected max_tokens={expected} "
            f"(finish reason {pb.FinishReason.Name(trace.finish_reason)})"
        )
    return trace


async def wait_serving(target: str, within: float) -> pb.ModelInfo:
    """Poll GetModelInfo until the worker reports SERVING; raise TimeoutError naming the last state."""
    deadline = time.monotonic() + within
    last = "no answer"
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GenerationServiceStub(channel)  # type: ignore[no-untyped-call]
        while time.monotonic() < deadline:
            try:
                info: pb.ModelInfo = await stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=2.0)
                last = pb.LoadState.Name(info.load_state)
                if info.load_state == pb.LOAD_STATE_SERVING:
                    return info
                if info.load_state == pb.LOAD_STATE_FAILED:
                    raise RuntimeError(f"worker at {target} failed to load: {info.load_message}")
            except grpc.aio.AioRpcError as err:
                last = f"{err.code().name}: {err.details()}"
            await asyncio.sleep(0.05)
    raise TimeoutError(f"worker at {target} not SERVING after {within:.0f}s (last: {last})")


async def concurrent(target: str, prompts: list[list[int]], max_tokens: int) -> tuple[list[Trace], float]:
    """Start one stream per prompt at once; return the traces and the wall time until all finished."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GenerationServiceStub(channel)  # type: ignore[no-untyped-call]
        start = time.perf_counter()
        traces = await asyncio.gather(*(stream_one(stub, request(p, max_tokens)) for p in prompts))
        return list(traces), time.perf_counter() - start


async def poisson(
    target: str, rate: float, count: int, prompt_len: int, max_tokens: int, vocab_size: int, seed: int
) -> tuple[list[Trace], float]:
    """Send `count` streams with exponential gaps of mean 1/rate (a Poisson arrival process)."""
    rng = random.Random(seed)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GenerationServiceStub(channel)  # type: ignore[no-untyped-call]
        tasks: list[asyncio.Task[Trace]] = []
        start = time.perf_counter()
        for i in range(count):
            req = request(prompt_ids(prompt_len, vocab_size, seed + i), max_tokens)
            tasks.append(asyncio.create_task(stream_one(stub, req)))
            if i + 1 < count:
                await asyncio.sleep(rng.expovariate(rate))
        traces = await asyncio.gather(*tasks)
        return list(traces), time.perf_counter() - start


def steady_rate(traces: list[Trace]) -> float:
    """Tokens/s while every stream is decoding at once: from the moment the last stream got its
    first token (all prefills done) to the moment the first stream got its last one."""
    start = max(t.token_times[0] for t in traces)
    end = min(t.token_times[-1] for t in traces)
    tokens = sum(1 for t in traces for when in t.token_times if start < when <= end)
    if end <= start or tokens == 0:
        raise ValueError(
            f"the {len(traces)} streams were never all decoding at once (a stream finished before the last "
            "one started): use more tokens per request"
        )
    return tokens / (end - start)
