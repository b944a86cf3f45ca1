"""The Grok-1 release checkpoint format, byte for byte: file names, pickles, and a safe reader.

A checkpoint is a directory `ckpt-0/` of files `tensor{i:05d}_{h:03d}` (leaf i in the order of
`ModelConfig.tensor_specs()`, host shard h, always 000 for the release). Each file is one
protocol-4 pickle of a float32 numpy array or of a `QuantizedWeight8bit` (int8 `weight`,
ml_dtypes bfloat16 `scales`), whose class the release pickled as `__main__.QuantizedWeight8bit`
(and some copies as `model.QuantizedWeight8bit`).

Reading: `read_leaf(path)` unpickles with `ReleaseUnpickler`, which resolves only the handful of
globals such a pickle names (numpy array reconstruction, numpy dtype, ml_dtypes.bfloat16, the
QuantizedWeight8bit class); any other global (os.system, builtins.eval, ...) is refused with an
error naming the file, before anything runs. Writing: `write_leaf(path, value)` emits the same
pickles the release wrote, with the release's module names.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

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


class CheckpointFormatError(ValueError):
    """A checkpoint file that is not what the release format and the model config say it must be."""


#: (module, name) -> object: everything a release pickle may name, and nothing else.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _NUMPY_RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _NUMPY_RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("ml_dtypes", "bfloat16"): ml_dtypes.bfloat16,
    ("__main__", "QuantizedWeight8bit"): QuantizedWeight8bit,
    ("model", "QuantizedWeight8bit"): QuantizedWeight8bit,
}
_ALLOWED_DTYPES = frozenset({np.dtype(np.float32), np.dtype(np.int8), np.dtype(ml_dtypes.bfloat16)})


class ReleaseUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only the globals a release checkpoint file contains."""

    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise CheckpointFormatError(
                f"{self._source}: refusing to unpickle {module}.{name}; a Grok-1 checkpoint file holds only "
                "numpy arrays and QuantizedWeight8bit. The file is not a release checkpoint (or was tampered "
                "with): do not load it."
            ) from None


def _check_array(value: Any, source: str, what: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise CheckpointFormatError(f"{source}: {what} is a {type(value).__name__}, expected a numpy array")
    if value.dtype not in _ALLOWED_DTYPES:
        raise CheckpointFormatError(
            f"{source}: {what} has dtype {value.dtype}; release checkpoints hold float32, int8 and bfloat16 only"
        )
    return value


def read_leaf(path: Path) -> np.ndarray | QuantizedWeight8bit:
    """Unpickle one checkpoint file safely; errors name the file and say what is wrong."""
    source = str(path)
    try:
        with open(path, "rb") as f:
            value = ReleaseUnpickler(f, source).load()
    except FileNotFoundError:
        raise CheckpointFormatError(f"{source}: file is missing from the checkpoint") from None
    except CheckpointFormatError:
        raise
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as e:
        raise CheckpointFormatError(
            f"{source}: not a readable checkpoint pickle (truncated or corrupt file?): {type(e).__name__}: {e}"
        ) from None
    if isinstance(value, QuantizedWeight8bit):
        state = vars(value)
        if set(state) != {"weight", "scales"}:
            raise CheckpointFormatError(
                f"{source}: QuantizedWeight8bit has fields {sorted(state)}, expected ['scales', 'weight']"
            )
        _check_array(value.weight, source, "QuantizedWeight8bit.weight")
        _check_array(value.scales, source, "QuantizedWeight8bit.scales")
        return value
    return _check_array(value, source, "the pickled value")


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
