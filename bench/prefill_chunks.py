"""Figure: running streams' inter-token p99 while maximum-length prompts arrive ÷ their p50 without
them (`python -m bench chunked`).

Starts `grok-worker serve` on a release-format checkpoint of the `small` preset with 10 decode
slots, buckets 32 and 256 and `--prefill-chunk 8`, and from this process (`bench.grpc_load`):
- baseline: 8 streams decoding alone; the median time between their tokens;
- loaded: the same 8 streams while prompts of the maximum length (256 tokens, one token each) are
  sent back to back, each prefilled in 32 chunks, each chunk carried by the streams' decode step
  (one forward pass for both); the 99th percentile of the same gaps. The two are alternated.
  Goal: p99 loaded ÷ p50 alone ≤ 2.
The chunk is small because on a CPU a prefill is compute-bound: 8 prompt tokens cost about what
one batch-10 decode step does (on an accelerator, where the decode step is bound by memory
bandwidth, the default 256 plays that role). For context, a shorter loaded run against a worker
with `--prefill-chunk 0` (whole prompts) shows what a long prompt costs the running streams
without chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import grpc

from bench import grpc_load
from bench.options import Options
from bench.report import Figure, Result
from bench.timing import median, percentile
from bench.weights import ensure_checkpoint
from bench.worker_proc import WorkerProcess
from grok.v1 import generation_pb2_grpc as pb_grpc
from grok_worker.model import ModelConfig, get_preset

NAME = "chunked"
STREAMS = 8
#: Two slots beyond the streams: a long prompt always finds one.
SLOTS = STREAMS + 2
#: The streams' prompts fit in one chunk: each is prefilled in one step (fused with the decode step once
#: a stream is running); only the long prompts take many chunks.
PROMPT_LEN = 8


async def _long_prompts(target: str, prompt: list[int], finished: list[int]) -> None:
    """Send the long prompt (one token each) back to back until cancelled; count those finished."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GenerationServiceStub(channel)  # type: ignore[no-untyped-call]
        while True:
            await stub.Generate(grpc_load.request(prompt, 1), timeout=grpc_load.STREAM_DEADLINE_SECONDS)
            finished.append(1)


async def _streams(
    target: str, prompts: list[list[int]], max_tokens: int, long: list[int] | None
) -> tuple[list[float], int]:
    """Gaps between the streams' tokens (their first token excluded), with long prompts arriving
    throughout when `long` is given; and how many long prompts finished meanwhile."""
    finished: list[int] = []
    background = asyncio.create_task(_long_prompts(target, long, finished)) if long else None
    if background is not None:
        await asyncio.sleep(0.2)  # the first long prompt is in its prefill when the streams start
    try:
        traces, _ = await grpc_load.concurrent(target, prompts, max_tokens)
    finally:
        if background is not None:  # cancelling the call frees its slot on the worker at once
            background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await background
    return [g for t in traces for g in t.gaps], len(finished)


def _worker(
    cfg: ModelConfig, root: Path, options: Options, max_seq_len: int, buckets: tuple[int, ...], chunk: int
) -> WorkerProcess:
    return WorkerProcess(
        cfg.name,
        root,
        options.workdir / "logs",
        max_batch=SLOTS,
        max_seq_len=max_seq_len,
        buckets=buckets,
        extra=("--prefill-chunk", str(chunk), "--max-queue", "4"),
    )


def run(options: Options) -> Result:
    cfg = get_preset("tiny" if options.smoke else "small")
    max_tokens = 8 if options.smoke else 12
    #: The unchunked run pays a whole prefill every step: kept short.
    unchunked_tokens = 4 if options.smoke else 6
    rounds = options.repeats(full=2, smoke=1)
    buckets, chunk = ((16, 128), 16) if options.smoke else ((32, 256), 8)
    max_seq_len = min(2 * buckets[-1], cfg.max_seq_len)
    root = ensure_checkpoint(cfg, options.workdir, "int8")
    prompts = [grpc_load.prompt_ids(PROMPT_LEN, cfg.vocab_size, seed) for seed in range(STREAMS)]
    long = grpc_load.prompt_ids(buckets[-1], cfg.vocab_size, seed=99)
    alone: list[float] = []
    loaded: list[float] = []
    long_done = 0
    with _worker(cfg, root, options, max_seq_len, buckets, chunk) as worker:
        asyncio.run(grpc_load.wait_serving(worker.target, within=900))
        for _ in range(rounds):  # alternate: alone, with long prompts
            alone.extend(asyncio.run(_streams(worker.target, prompts, max_tokens, None))[0])
            gaps, n = asyncio.run(_streams(worker.target, prompts, max_tokens, long))
            loaded.extend(gaps)
            long_done += n
    with _worker(cfg, root, options, max_seq_len, buckets, 0) as whole:
        asyncio.run(grpc_load.wait_serving(whole.target, within=900))
        unchunked, _ = asyncio.run(_streams(whole.target, prompts, unchunked_tokens, long))
    p50 = median(alone)
    result = Result(NAME)
    result.add(
        Figure(
            NAME,
            f"itl_p99_with_max_length_prompts_{cfg.name}",
            percentile(loaded, 99),
            "s",
            p50,
            "<=2",
            limited_by=(
                "a step carrying a chunk costs the decode step plus the chunk's own compute (the "
                "weights are read once for both); a smaller --prefill-chunk lowers it at the cost of "
                "slower long prompts"
            ),
        )
    )
    result.add(
        Figure(
            NAME, f"itl_p99_with_max_length_prompts_unchunked_{cfg.name}", percentile(unchunked, 99), "s", p50
        )
    )
    result.note(
        "load",
        f"{STREAMS} streams of {max_tokens} tokens (prompt {PROMPT_LEN}) on {SLOTS} slots; prompts of "
        f"{buckets[-1]} tokens back to back, prefilled in chunks of {chunk} ({long_done} finished during "
        f"the loaded runs); {rounds} rounds; p50 alone {p50 * 1e3:.1f} ms, loaded {median(loaded) * 1e3:.1f} ms; "
        f"the unchunked run: "
        f"{unchunked_tokens} tokens per stream",
    )
    return result
