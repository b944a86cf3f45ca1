"""Figure 5: loading a release-format checkpoint against plain file reading (`python -m bench checkpoint`).

Writes (once, cached in the work directory) a random-weight checkpoint of the `small` preset with
the project's release-format writer, then alternates two ways of getting the same files into memory:
- the project's `load_checkpoint` (restricted unpickling, shape checks, dtype conversion, placement
  on the device, in parallel), until every array is ready;
- plain reading: `read_bytes()` of every file, one after the other;
- and, to split the loader's time, its first stage alone (`read_leaf`: read and unpickle).
Both run with the files in the page cache (the first plain read warms it), so the figure measures
the loader's own work against the cheapest possible read, not the disk. Goal: load ÷ plain >= 0.8
(in bytes per second).
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import jax

from bench.options import Options
from bench.report import Figure, Result
from bench.timing import interleaved, median
from bench.weights import checkpoint_files, ensure_checkpoint
from grok_worker.checkpoint import load_checkpoint, read_leaf
from grok_worker.model import get_preset

NAME = "checkpoint"


def plain_read(files: list[Path]) -> int:
    total = 0
    for f in files:
        total += len(f.read_bytes())
    return total


def run(options: Options) -> Result:
    cfg = get_preset("tiny" if options.smoke else "small")
    repeats = options.repeats(full=3, smoke=1)
    root = ensure_checkpoint(cfg, options.workdir, "int8")
    files = checkpoint_files(root)
    size = sum(f.stat().st_size for f in files)

    def load() -> None:
        params = load_checkpoint(root, cfg)
        jax.block_until_ready(params)  # type: ignore[no-untyped-call]
        del params
        gc.collect()

    def unpickle() -> None:  # the loader's first stage alone, to split its time
        for f in files:
            read_leaf(f)

    samples = interleaved(
        {"plain": lambda: plain_read(files), "unpickle": unpickle, "load": load}, repeats=repeats, warmup=1
    )
    t_plain, t_unpickle, t_load = (median(samples[k]) for k in ("plain", "unpickle", "load"))
    result = Result(NAME)
    result.add(
        Figure(
            NAME,
            f"load_bytes_per_s_{cfg.name}_int8",
            size / t_load,
            "B/s",
            baseline=size / t_plain,
            goal=">=0.8",
            limited_by=(
                f"reading and unpickling every file one after another takes {t_unpickle:.2f} s against "
                f"{t_plain:.2f} s for the plain read; the other {max(t_load - t_unpickle, 0.0):.2f} s of the "
                f"load's {t_load:.2f} s go to checking, dtype conversion and placing each array on the device "
                f"(copies of the data), which {os.cpu_count()} cores do not hide behind the reads"
            ),
        )
    )
    result.note(
        "files",
        f"{len(files)} files, {size / 1e6:.1f} MB in the page cache; load {t_load:.2f} s, read + unpickle "
        f"alone {t_unpickle:.2f} s, plain read {t_plain:.2f} s (medians of {repeats}, alternated)",
    )
    return result
