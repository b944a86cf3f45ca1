"""Read array bytes from checkpoint files straight into numpy buffers: whole arrays or some boxes.

Data flow: `ArrayRef` (from `pickle_index`, already checked: shape x item size == payload length,
payload inside the file) + boxes (per axis [start, stop), e.g. the slices this host's devices
hold) -> `byte_runs`: the union of the boxes as sorted, merged byte intervals of the array's
C-order layout -> `read_array`: one `os.preadv` per interval into a buffer the size of the whole
array, at the same offsets (pages never written are never touched, so they take no memory) -> an
ndarray of the reader's own dtype. Bytes outside the boxes are left uninitialised: callers only
look inside the boxes.

What is read for a box: the array is C-ordered, so a box whose axes after some axis j are whole is,
for each index of the axes before j, one contiguous range along j. An expert slice [e0:e1, :, :]
is one range; a column slice [:, :, n0:n1] of [E, K, N] is E*K ranges of (n1-n0) elements. Ranges
of several boxes are merged where they touch or overlap, so every byte of the union is read once.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from grok_worker.checkpoint.errors import CheckpointFormatError
from grok_worker.checkpoint.pickle_index import ArrayRef

#: Per axis (start, stop): a rectangular part of an array.
Box = tuple[tuple[int, int], ...]
#: Buffers are aligned like this so XLA's CPU client may use them without another copy.
_ALIGN = 64


def full_box(shape: Sequence[int]) -> Box:
    return tuple((0, d) for d in shape)


def box_of(index: Iterable[Any], shape: Sequence[int]) -> Box:
    """A JAX index (tuple of slices with step 1, as shardings give) as a Box."""
    box = []
    for s, d in zip(index, shape, strict=True):
        start, stop, step = s.indices(d)
        if step != 1:
            raise ValueError(f"index {index} has a step; shardings slice with step 1")
        box.append((start, max(start, stop)))
    return tuple(box)


def box_bytes(box: Box, itemsize: int) -> int:
    return math.prod(b - a for a, b in box) * itemsize


def _box_runs(shape: Sequence[int], itemsize: int, box: Box) -> tuple[np.ndarray, np.ndarray]:
    """Byte intervals [start, end) of one box, before merging."""
    if any(b <= a for a, b in box):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if not shape:
        return np.zeros(1, np.int64), np.full(1, itemsize, np.int64)
    strides = [math.prod(shape[i + 1 :]) * itemsize for i in range(len(shape))]
    j = len(shape) - 1
    while j > 0 and box[j] == (0, shape[j]):
        j -= 1
    offsets = np.zeros(1, np.int64)
    for axis in range(j):  # every index of the leading axes, in C order
        a, b = box[axis]
        offsets = (offsets[:, None] + np.arange(a, b, dtype=np.int64)[None, :] * strides[axis]).ravel()
    starts = offsets + box[j][0] * strides[j]
    return starts, starts + (box[j][1] - box[j][0]) * strides[j]


def byte_runs(shape: Sequence[int], itemsize: int, boxes: Iterable[Box]) -> np.ndarray:
    """The union of `boxes` as sorted, disjoint byte intervals [[start, end), ...] (int64 [n, 2])."""
    parts = [_box_runs(shape, itemsize, box) for box in boxes]
    starts = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    ends = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
    if not len(starts):
        return np.zeros((0, 2), np.int64)
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], np.maximum.accumulate(ends[order])
    first = np.ones(len(starts), bool)
    first[1:] = starts[1:] > ends[:-1]  # touching intervals merge: one read instead of two
    last = np.r_[np.flatnonzero(first)[1:] - 1, len(starts) - 1]
    return np.stack([starts[first], ends[last]], axis=1)


def empty_array(dtype: np.dtype[Any], shape: Sequence[int]) -> np.ndarray:
    """An uninitialised, page-aligned C-order array (only the pages written take memory).

    Its own anonymous mapping with huge pages declined: numpy asks for transparent huge pages on
    large arrays, and under memory pressure the kernel then compacts memory at each fault, which
    made loads 2-3x slower than plain reads on a busy machine."""
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < mmap.PAGESIZE:
        raw = np.empty(nbytes + _ALIGN, np.uint8)
        start = (-raw.ctypes.data) % _ALIGN
        return raw[start : start + nbytes].view(dtype).reshape(tuple(shape))
    area = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    with contextlib.suppress(AttributeError, OSError):  # MADV_NOHUGEPAGE is Linux-only
        area.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(area, np.uint8).view(dtype).reshape(tuple(shape))


def _pread_exact(fd: int, view: memoryview, offset: int, ref: ArrayRef) -> None:
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n == 0:
            raise CheckpointFormatError(
                f"{ref.source}: file ended while reading an array's data (changed or truncated while loading?)"
            )
        done += n


def read_array(ref: ArrayRef, boxes: Sequence[Box] | None = None) -> tuple[np.ndarray, int]:
    """The array `ref` describes, with (at least) the union of `boxes` filled in (all of it when
    `boxes` is None); returns it and the number of its bytes taken from the file."""
    runs = byte_runs(ref.shape, ref.dtype.itemsize, [full_box(ref.shape)] if boxes is None else boxes)
    wanted = int((runs[:, 1] - runs[:, 0]).sum())
    out = empty_array(ref.dtype, ref.shape)
    flat = memoryview(out.reshape(-1).view(np.uint8).data) if out.size else memoryview(bytearray())
    inline = ref.payload.inline
    if inline is not None:
        for start, end in runs.tolist():
            flat[start:end] = inline[start:end]
        return out, wanted
    fd = os.open(ref.source, os.O_RDONLY)
    try:
        for start, end in runs.tolist():
            _pread_exact(fd, flat[start:end], ref.payload.offset + start, ref)
    finally:
        os.close(fd)
    return out, wanted
