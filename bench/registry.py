"""The benchmarks by name, and which of them form the quick set.

Each entry names a module with `run(options: Options) -> Result`; modules are imported only when
their benchmark runs, so `python -m bench --help` stays fast and a benchmark whose subject is not
installed fails alone.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from bench.options import Options
from bench.report import Result


@dataclass(frozen=True)
class Entry:
    module: str
    quick: bool
    figures: str


BENCHMARKS: dict[str, Entry] = {
    "decode": Entry("bench.decode", True, "1 decode bandwidth (small, int8, batch 1); bytes read per token"),
    "moe": Entry("bench.moe", True, "2 MoE step time ÷ dense compute-all-experts baseline"),
    "checkpoint": Entry("bench.checkpoint_load", True, "5 checkpoint load ÷ plain file reading"),
    "startup": Entry("bench.startup", False, "7 worker start -> SERVING (import, load, compile)"),
    "serving": Entry("bench.serving", False, "3 batching gain, 4 gRPC overhead, TTFT/ITL under Poisson load"),
    "http": Entry("bench.openai_http", False, "11 streamed HTTP (OpenAI API) per-token time ÷ engine step"),
    "chunked": Entry(
        "bench.prefill_chunks", False, "10 running streams' ITL p99 with max-length prompts ÷ p50 alone"
    ),
    "operator": Entry("bench.operator_apply", False, "6 apply -> children, 100 to Ready, idle writes"),
    "fleet": Entry(
        "bench.operator_fleet",
        False,
        "13 1,000 GrokDeployments to Ready ÷ 120 s; idle writes and LISTs; operator RSS",
    ),
    "apiserver_writes": Entry(
        "bench.apiserver_writes",
        False,
        "14 apiserver CPU per GrokDeployment create, finalizer and status write ÷ a ConfigMap create",
    ),
    "collectives": Entry(
        "bench.collectives",
        False,
        "8 bytes between devices per decode step ÷ activation bytes that must move",
    ),
    "host_reads": Entry(
        "bench.host_reads", False, "9 checkpoint bytes each host reads ÷ that host's share in the plan"
    ),
    "realdemo": Entry(
        "bench.realdemo", False, "warm `make demo` to first token: real pods vs host processes"
    ),
    "gpu": Entry("bench.gpu", False, "grok-1 layers on one GPU (run by bench/gpu.sh on an H200)"),
}


#: Benchmarks `all` leaves out: they need a lent GPU, or root and a real node, or (fleet) a quarter
#: of an hour of a 130-node control plane.
NOT_IN_ALL = ("gpu", "realdemo", "fleet")


def runner(name: str) -> Callable[[Options], Result]:
    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; choose from quick, all, {', '.join(BENCHMARKS)}")
    module = importlib.import_module(BENCHMARKS[name].module)
    fn: Callable[[Options], Result] = module.run
    return fn


def quick_set() -> list[str]:
    return [name for name, entry in BENCHMARKS.items() if entry.quick]
