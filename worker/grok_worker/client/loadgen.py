"""A load generator for a running worker or Service: throughput and latency under concurrency.

  python -m grok_worker.client.loadgen --target HOST:PORT --concurrency 1,8 --requests 16 \
      --prompt-len 32 --max-tokens 64 [--metrics http://HOST:9090/metrics]

Data flow: for each concurrency level C, C asyncio workers send streaming requests (random token-id
prompts, greedy, EOS ignored so every request makes exactly --max-tokens tokens) until --requests
are done; each message's arrival time gives time to first token and inter-token latency. With
--metrics, the server's mean decode-step time over the same window is scraped too, so the gRPC
streaming overhead per token (client inter-token latency minus the step) can be reported.
Prints one JSON object per level. (`python -m bench serving` is the project's fixed benchmark;
this tool points the same measurements at any running deployment.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import grpc

from grok_worker.client import security
from grok_worker.client.client import AsyncGrokClient
from grok_worker.model_config import BOS_ID, FIRST_ORDINARY_ID


@dataclass
class LevelResult:
    concurrency: int
    requests: int
    completion_tokens: int
    seconds: float
    tokens_per_second: float
    ttft_p50_ms: float
    ttft_p90_ms: float
    ttft_p99_ms: float
    itl_p50_ms: float
    itl_p90_ms: float
    itl_p99_ms: float
    server_step_mean_ms: float | None = None
    streaming_overhead_per_token_ms: float | None = None


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def scrape_step(url: str) -> tuple[float, float]:
    """(sum, count) of grok_decode_step_seconds from a Prometheus endpoint."""
    body = urllib.request.urlopen(url, timeout=10).read().decode()
    total = re.search(r"^grok_decode_step_seconds_sum ([0-9.e+-]+)$", body, re.M)
    count = re.search(r"^grok_decode_step_seconds_count ([0-9.e+-]+)$", body, re.M)
    return (float(total[1]) if total else 0.0, float(count[1]) if count else 0.0)


async def run_level(
    client: AsyncGrokClient,
    concurrency: int,
    requests: int,
    prompt_len: int,
    max_tokens: int,
    vocab: int,
    metrics_url: str | None,
) -> LevelResult:
    rng = random.Random(concurrency)
    todo = list(range(requests))
    ttft: list[float] = []
    itl: list[float] = []
    tokens = 0

    async def worker() -> None:
        nonlocal tokens
        while todo:
            todo.pop()
            prompt = [BOS_ID] + [rng.randrange(FIRST_ORDINARY_ID, vocab) for _ in range(prompt_len - 1)]
            start = last = time.perf_counter()
            first = True
            async for message in client.generate_stream(prompt, max_tokens=max_tokens, stop_at_eos=False):
                now = time.perf_counter()
                if message.token_ids:
                    (ttft if first else itl).append(now - (start if first else last))
                    first = False
                    tokens += len(message.token_ids)
                last = now

    before = await asyncio.to_thread(scrape_step, metrics_url) if metrics_url else None
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    result = LevelResult(
        concurrency,
        requests,
        tokens,
        seconds,
        tokens / seconds,
        *(1000 * percentile(ttft, q) for q in (50, 90, 99)),
        *(1000 * percentile(itl, q) for q in (50, 90, 99)),
    )
    if before is not None and metrics_url:
        after = await asyncio.to_thread(scrape_step, metrics_url)
        steps = after[1] - before[1]
        if steps:
            result.server_step_mean_ms = 1000 * (after[0] - before[0]) / steps
            result.streaming_overhead_per_token_ms = (
                1000 * sum(itl) / max(1, len(itl)) - result.server_step_mean_ms
            )
    return result


async def main_async(args: argparse.Namespace) -> list[LevelResult]:
    async with AsyncGrokClient(args.target, args.timeout, security.from_arguments(args)) as client:
        deadline = time.monotonic() + args.timeout
        while True:
            with contextlib.suppress(grpc.RpcError):
                if await client.health() == "SERVING":
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"{args.target} did not become SERVING within {args.timeout}s")
            await asyncio.sleep(0.5)
        info = await client.info()
        await client.generate([1, 5, 6], max_tokens=2, stop_at_eos=False)  # warm the connection
        results = []
        for level in args.concurrency:
            result = await run_level(
                client,
                level,
                args.requests or 2 * level,
                args.prompt_len,
                args.max_tokens,
                min(info.vocab_size, 30000),
                args.metrics,
            )
            print(json.dumps(asdict(result)), flush=True)
            results.append(result)
        return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="grok-loadgen", description="Load generator for a Grok worker")
    parser.add_argument("--target", default="127.0.0.1:50051")
    security.add_arguments(parser)
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8])
    parser.add_argument(
        "--requests", type=int, default=0, help="requests per level (default 2 x concurrency)"
    )
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--metrics", help="the worker's Prometheus URL, to report the streaming overhead")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    results = asyncio.run(main_async(args))
    if len(results) > 1 and results[0].tokens_per_second:
        ratio = results[-1].tokens_per_second / results[0].tokens_per_second
        print(json.dumps({"throughput_ratio": ratio, "levels": [r.concurrency for r in results]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
