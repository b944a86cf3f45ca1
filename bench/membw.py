"""This machine's memory-copy bandwidth, measured with numpy copies of a large buffer.

It is the limit a batch-1 decode step is held against: such a step must stream every active weight
from memory once, so "weight bytes per second ÷ copy bandwidth" says how close it runs to the
hardware. Bytes are counted the STREAM way: a copy of N bytes moves 2N (N read, N written).
The buffer is split over `threads` threads (numpy releases the GIL while copying), since the decode
step itself runs on all cores.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bench.timing import median, time_once


class CopyBandwidth:
    """Holds a source and destination buffer; `once()` times one full copy and returns seconds."""

    def __init__(self, size_bytes: int = 512 << 20, threads: int | None = None) -> None:
        if size_bytes < 1 << 16:
            raise ValueError(f"copy buffer of {size_bytes} bytes is too small to measure memory bandwidth")
        self.threads = threads or os.cpu_count() or 1
        self.size_bytes = size_bytes
        self.src = np.ones(size_bytes, dtype=np.uint8)
        self.dst = np.zeros_like(self.src)
        bounds = np.linspace(0, size_bytes, self.threads + 1, dtype=np.int64)
        self._chunks = [(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def _copy(self, chunk: tuple[int, int]) -> None:
        a, b = chunk
        np.copyto(self.dst[a:b], self.src[a:b])

    def copy(self) -> None:
        if self._pool is None:
            np.copyto(self.dst, self.src)
        else:
            list(self._pool.map(self._copy, self._chunks))

    def once(self) -> float:
        return time_once(self.copy)

    @property
    def bytes_moved(self) -> int:
        """Bytes counted per copy: read plus write (STREAM convention)."""
        return 2 * self.size_bytes

    def measure(self, repeats: int = 7) -> float:
        """Median bytes/s over `repeats` copies (after one warm-up copy)."""
        self.copy()
        return self.bytes_moved / median([self.once() for _ in range(repeats)])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def __enter__(self) -> CopyBandwidth:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
