"""The Grok-1 release checkpoint format, byte for byte: file names, pickles, and a safe reader.

A checkpoint is a directory `ckpt-0/` of files `tensor{i:05d}_{h:03d}` (leaf i in the order of
`ModelConfig.tensor_specs()`, host shard h, always 000 for the release). Each file is one
protocol-4 pickle of a float32 numpy array or of a `QuantizedWeight8bit` (int8 `weight`,
ml_dtypes bfloat16 `scales`), whose class the release pickled as `__main__.QuantizedWeight8bit`
(and some copies as `model.QuantizedWeight8bit`).

Reading: `read_leaf(path)` indexes the pickle with `pickle_index` (no pickled state is ever
applied, any global but the handful a release pickle names is refused, array bytes are located, not
read) and then reads the array bytes with `reader` into buffers of the reader's own dtypes. Writing: `write_leaf(path, value)` emits the same
pickles the release wrote, with the release's module names.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from grok_worker.checkpoint.errors import CheckpointFormatError
from grok_worker.checkpoint.pickle_index import ArrayRef, index_leaf
from grok_worker.checkpoint.reader import read_array

CKPT_DIR = "ckpt-0"
#: Host shard suffix of every file of a single-host checkpoint (the release's).
HOST_SHARD = 0
_NUMPY_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]


def leaf_file_name(index: int, host_shard: int = HOST_SHARD) -> str:
    return f"tensor{index:05d}_{host_shard:03d}"


class QuantizedWeight8bit:
    """The release's int8 weight record: `weight` int8 [..., In, Out], `scales` bf16 [..., G, Out]."""

    weight: np.ndarray
    scales: np.ndarray

    def __init__(self, weight: np.ndarray, scales: np.ndarray) -> None:
        self.weight = weight
        self.scales = scales


def _read_array(ref: ArrayRef) -> np.ndarray:
    return read_array(ref)[0]


def read_leaf(path: Path) -> np.ndarray | QuantizedWeight8bit:
    """Read one checkpoint file whole, safely (`pickle_index` + `reader`); errors name the file."""
    index, _ = index_leaf(path)
    if index.weight is not None and index.scales is not None:
        return QuantizedWeight8bit(weight=_read_array(index.weight), scales=_read_array(index.scales))
    assert index.array is not None
    return _read_array(index.array)


class _ReleasePickler(pickle._Pickler):
    """A pickler that names globals as the release did (`__main__.QuantizedWeight8bit`,
    `numpy.core.multiarray._reconstruct`), so loaders written against the release accept the files."""

    _NAMES: dict[int, tuple[str, str]] = {  # noqa: RUF012 - identity map, never mutated
        id(QuantizedWeight8bit): ("__main__", "QuantizedWeight8bit"),
        id(_NUMPY_RECONSTRUCT): ("numpy.core.multiarray", "_reconstruct"),
    }

    def save_global(self, obj: Any, name: str | None = None) -> None:
        names = self._NAMES.get(id(obj))
        if names is None:
            super().save_global(obj, name)  # type: ignore[misc]
            return
        this: Any = self
        this.save(names[0])
        this.save(names[1])
        this.write(pickle.STACK_GLOBAL)
        this.memoize(obj)


def write_leaf(path: Path, value: np.ndarray | QuantizedWeight8bit) -> None:
    """Write one leaf as the release did (pickle protocol 4); via a temp name so a crash leaves no
    truncated file under the real name."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        _ReleasePickler(f, protocol=4).dump(value)
    tmp.replace(path)


__all__ = [
    "CKPT_DIR",
    "CheckpointFormatError",
    "QuantizedWeight8bit",
    "leaf_file_name",
    "read_leaf",
    "write_leaf",
]
