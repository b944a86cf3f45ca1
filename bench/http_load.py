"""Client-side load for the OpenAI-compatible HTTP API: streamed completions timed per token.

Posts `/v1/completions` with `"stream": true` over aiohttp (one connection per stream) and reads the
server-sent events as they arrive; each event carrying text or a token counts as one token at its
arrival time, in the same `Trace` the gRPC benchmarks use. Requests use token-id prompts, greedy
sampling, `ignore_eos` and `logprobs: 0`, so every event carries exactly one token whatever the
weights (text alone could be held back by the detokenizer).
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from bench.grpc_load import Trace


async def wait_http(url: str, within: float) -> None:
    """Poll GET /health until 200; TimeoutError naming the last answer."""
    deadline = time.monotonic() + within
    last = "no answer"
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(f"{url}/health") as response:
                    if response.status == 200:
                        return
                    last = f"{response.status} {await response.text()}"
            except aiohttp.ClientError as err:
                last = str(err)
            await asyncio.sleep(0.05)
    raise TimeoutError(f"HTTP API at {url} not healthy after {within:.0f}s (last: {last})")


async def stream_completion(url: str, prompt: list[int], max_tokens: int) -> Trace:
    body = {
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "logprobs": 0,
        "stream": True,
    }
    async with aiohttp.ClientSession() as session:
        trace = Trace(sent=time.perf_counter())
        async with session.post(f"{url}/v1/completions", json=body) as response:
            if response.status != 200:
                raise RuntimeError(f"completion failed: {response.status} {await response.text()}")
            async for line in response.content:
                now = time.perf_counter()
                if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                    continue
                choices = json.loads(line[6:])["choices"]
                if choices and choices[0]["logprobs"] and choices[0]["logprobs"]["tokens"]:
                    trace.token_times.append(now)
    if len(trace.token_times) != max_tokens:
        raise RuntimeError(f"stream returned {len(trace.token_times)} tokens, expected {max_tokens}")
    return trace
