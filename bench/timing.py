"""Timing helpers shared by the benchmarks.

On a shared, noisy machine a ratio is only fair when its two sides are measured under the same
conditions, so `interleaved` alternates the candidates (A, B, A, B, ...) and each side is summarised
by its median; a burst of load from a neighbour then hits both sides alike.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation; raises on an empty sample."""
    if not samples:
        raise ValueError("percentile of an empty sample")
    xs = sorted(samples)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median(samples: Sequence[float]) -> float:
    return percentile(samples, 50.0)


def time_once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(
    candidates: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Run each candidate `warmup` times, then `repeats` rounds of one call each, alternating.

    Each callable must finish its work before returning (for JAX: block_until_ready).
    Returns the per-call seconds of each candidate.
    """
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            samples[name].append(time_once(fn))
    return samples


class Stopwatch:
    """Marks named instants relative to a start, for phase splits (import, load, compile)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.marks: dict[str, float] = {}

    def mark(self, name: str) -> float:
        self.marks[name] = time.perf_counter() - self.start
        return self.marks[name]
