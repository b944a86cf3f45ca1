"""Figure: per-token time of a streamed HTTP completion ÷ the engine's step (`python -m bench http`).

Starts `grok-worker serve --http-port` on a release-format checkpoint of the `small` preset (8 decode
slots, buckets 32 and 128) and streams lone completions from this process over the OpenAI-compatible
API (`bench.http_load`: aiohttp, server-sent events). The limit is the engine's own decode step,
timed in this process on a `ModelEngine` built from the same checkpoint with the same shapes,
alternated with the HTTP runs (as figure 4 does for gRPC, which is repeated here for comparison).
Goal: the median time between streamed tokens ≤ 1.05 × the step.
"""

from __future__ import annotations

import asyncio

from bench import grpc_load, http_load
from bench.options import Options
from bench.report import Figure, Result
from bench.serving import BUCKETS, PROMPT_LEN, SLOTS, engine_times
from bench.timing import median
from bench.weights import ensure_checkpoint
from bench.worker_proc import WorkerProcess, free_port
from grok_worker.checkpoint import load_checkpoint
from grok_worker.engine.model_engine import ModelEngine
from grok_worker.model import get_preset

NAME = "http"


def run(options: Options) -> Result:
    cfg = get_preset("tiny" if options.smoke else "small")
    max_tokens = 6 if options.smoke else 16
    rounds = options.repeats(full=3, smoke=1)
    max_seq_len = min(512, cfg.max_seq_len)
    root = ensure_checkpoint(cfg, options.workdir, "int8")
    prompt = grpc_load.prompt_ids(PROMPT_LEN, cfg.vocab_size, seed=0)
    engine = ModelEngine(cfg, load_checkpoint(root, cfg), SLOTS, max_seq_len, BUCKETS)
    http_port = free_port()
    url = f"http://127.0.0.1:{http_port}"
    http_gaps: list[float] = []
    grpc_gaps: list[float] = []
    steps: list[float] = []
    with WorkerProcess(
        cfg.name,
        root,
        options.workdir / "logs",
        max_batch=SLOTS,
        max_seq_len=max_seq_len,
        buckets=BUCKETS,
        extra=("--http-port", str(http_port)),
    ) as worker:
        asyncio.run(grpc_load.wait_serving(worker.target, within=600))
        asyncio.run(http_load.wait_http(url, within=60))
        for _ in range(rounds):  # alternate: HTTP stream, the engine alone, gRPC stream
            http_gaps.extend(asyncio.run(http_load.stream_completion(url, prompt, max_tokens)).gaps)
            steps.append(engine_times(engine, steps=max(3, max_tokens // 2))[1])
            traces, _ = asyncio.run(grpc_load.concurrent(worker.target, [prompt], max_tokens))
            grpc_gaps.extend(traces[0].gaps)
    step = median(steps)
    limited_by = (
        "per-token work outside the jitted step (host round trip of the sampled tokens, the scheduler's "
        "bookkeeping, asyncio, JSON and the HTTP write), and a server process competing for the same cores"
    )
    result = Result(NAME)
    result.add(
        Figure(NAME, f"http_per_token_time_{cfg.name}", median(http_gaps), "s", step, "<=1.05", limited_by)
    )
    result.add(
        Figure(NAME, f"grpc_per_token_time_{cfg.name}", median(grpc_gaps), "s", step, "<=1.05", limited_by)
    )
    result.note(
        "load",
        f"one stream at a time, prompt {PROMPT_LEN} tokens, {max_tokens} tokens each, {rounds} rounds; engine "
        f"decode step (batch {SLOTS}) {step * 1e3:.1f} ms",
    )
    return result
