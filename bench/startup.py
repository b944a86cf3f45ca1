"""Figure 7: worker process start -> SERVING, split into import, load and compile (`python -m bench startup`).

Starts `grok-worker serve` on a release-format checkpoint of each preset (`tiny`, `small`) and polls
its GetModelInfo every 20 ms from this process. The worker answers as soon as its gRPC server is
up, reporting LOADING, then COMPILING once the weights are on the device, then SERVING once every
prefill bucket and the decode step are compiled. So:
- import  = process start -> first answer (Python, JAX and gRPC imports, config, server start);
- load    = first answer -> COMPILING (checkpoint read onto the device);
- compile = COMPILING -> SERVING (prefill buckets 32 and 128 and the batch-8 decode step).
Baselines measured in the same run: for import, a bare `python -c "import jax, grpc"`; for load,
plain reading of the same checkpoint files. No goals: the figure is reported with its split.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from functools import partial

import grpc

from bench.checkpoint_load import plain_read
from bench.options import Options
from bench.report import Figure, Result
from bench.timing import median, time_once
from bench.weights import checkpoint_files, ensure_checkpoint
from bench.worker_proc import WorkerProcess
from grok.v1 import generation_pb2 as pb
from grok.v1 import generation_pb2_grpc as pb_grpc

NAME = "startup"
POLL_SECONDS = 0.02
TIMEOUT_SECONDS = 600.0


async def phases(worker: WorkerProcess) -> dict[str, float]:
    """Seconds from process start to: first answer ("up"), COMPILING ("loaded"), SERVING ("serving")."""
    seen: dict[str, float] = {}
    deadline = time.perf_counter() + TIMEOUT_SECONDS
    async with grpc.aio.insecure_channel(worker.target) as channel:
        stub = pb_grpc.GenerationServiceStub(channel)  # type: ignore[no-untyped-call]
        while time.perf_counter() < deadline:
            worker.check_alive()
            try:
                info = await stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=1.0)
            except grpc.aio.AioRpcError:
                await asyncio.sleep(POLL_SECONDS)
                continue
            now = time.perf_counter() - worker.started_at
            seen.setdefault("up", now)
            if info.load_state in (pb.LOAD_STATE_COMPILING, pb.LOAD_STATE_SERVING):
                seen.setdefault("loaded", now)
            if info.load_state == pb.LOAD_STATE_SERVING:
                seen["serving"] = now
                return seen
            if info.load_state == pb.LOAD_STATE_FAILED:
                raise RuntimeError(
                    f"worker failed while starting: {info.load_message} (log {worker.log_path})"
                )
            await asyncio.sleep(POLL_SECONDS)
    raise TimeoutError(f"worker not SERVING after {TIMEOUT_SECONDS:.0f}s (log {worker.log_path})")


def bare_import_seconds(repeats: int) -> float:
    cmd = [sys.executable, "-c", "import jax, grpc"]
    return median([time_once(lambda: subprocess.run(cmd, check=True)) for _ in range(repeats)])


def run(options: Options) -> Result:
    presets = ("tiny",) if options.smoke else ("tiny", "small")
    result = Result(NAME)
    bare = bare_import_seconds(options.repeats(full=3, smoke=1))
    from grok_worker.model import get_preset

    for preset in presets:
        cfg = get_preset(preset)
        root = ensure_checkpoint(cfg, options.workdir, "int8")
        files = checkpoint_files(root)
        plain_read(files)  # warm the page cache, as the worker's read will find it
        t_plain = median([time_once(partial(plain_read, files)) for _ in range(3)])
        with WorkerProcess(
            preset, root, options.workdir / "logs", max_seq_len=min(512, cfg.max_seq_len)
        ) as worker:
            seen = asyncio.run(phases(worker))
        split = {
            "import": seen["up"],
            "load": seen["loaded"] - seen["up"],
            "compile": seen["serving"] - seen["loaded"],
        }
        result.add(Figure(NAME, f"start_to_serving_{preset}", seen["serving"], "s"))
        result.add(Figure(NAME, f"import_{preset}", split["import"], "s", baseline=bare))
        result.add(Figure(NAME, f"load_{preset}", split["load"], "s", baseline=t_plain))
        result.add(Figure(NAME, f"compile_{preset}", split["compile"], "s"))
        result.note(
            preset,
            f"import {split['import']:.2f} s (bare `import jax, grpc` {bare:.2f} s), load {split['load']:.2f} s "
            f"(plain read of {len(files)} files {t_plain:.2f} s), compile {split['compile']:.2f} s "
            f"(buckets 32,128 + decode batch 8); polled every {POLL_SECONDS * 1e3:.0f} ms",
        )
    return result
