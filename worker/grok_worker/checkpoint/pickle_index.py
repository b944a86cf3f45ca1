"""Index a release checkpoint pickle without applying any pickled state or reading its tensors.

Data flow: file -> `_IndexUnpickler` (Python's pure-Python pickle machine, restricted) ->
`LeafIndex` (one `ArrayRef`, or the weight and scales `ArrayRef`s of a QuantizedWeight8bit).
- Every global a release pickle names resolves to a placeholder defined here, never to numpy's
  own reconstruction, `numpy.dtype` or an ml_dtypes type; any other global is refused. So nothing
  from the file ever reaches `numpy.dtype.__setstate__`, which would rewrite the process-wide
  bfloat16 type (its flags differ between ml_dtypes eras; a crafted file could change its size).
- A pickled dtype is recognised by its descriptor (name, byte order, item size, alignment,
  no fields/subarray) as one of float32, int8, bfloat16; the reader then uses its own dtype objects.
- An array payload (BINBYTES/BINBYTES8) outside a pickle frame is not read: its file offset and
  length are recorded and the parser seeks past it; payloads inside a frame (arrays under 64 KiB)
  are kept as bytes. Every read is clamped to the bytes left in the file, so no length field can
  make the parser allocate more than the file holds.
- Each array's shape x item size must equal its payload length, and the payload must lie inside
  the file, before anyone allocates memory for it (`reader` does that, from `ArrayRef`).
Any failure is a `CheckpointFormatError` naming the file and what was found.
"""

from __future__ import annotations

import math
import os
import pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import ml_dtypes
import numpy as np

from grok_worker.checkpoint.errors import CheckpointFormatError

#: The dtypes the format allows, by the reader's own dtype objects.
DTYPES: dict[str, np.dtype[Any]] = {
    "float32": np.dtype(np.float32),
    "int8": np.dtype(np.int8),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
}
#: numpy's pickled dtype argument for the builtin types -> (name, allowed byte orders).
_BUILTIN_DTYPES = {"f4": ("float32", ("<", "=")), "i1": ("int8", ("|", "<", "="))}
_SMALL_BINBYTES_LIMIT = 1 << 16


class _Sentinel:
    """A named stand-in for a global that must only ever be passed as an argument, never called."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_NDARRAY = _Sentinel("numpy.ndarray")
_BFLOAT16_TYPE = _Sentinel("ml_dtypes.bfloat16")


@dataclass(frozen=True)
class Payload:
    """Raw array bytes: at `offset` in the file (`inline` None) or kept `inline` (small arrays)."""

    offset: int
    length: int
    inline: bytes | None = None


@dataclass(frozen=True)
class ArrayRef:
    """One array of a checkpoint file: what it is and where its C-order bytes are."""

    source: Path
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    payload: Payload

    @property
    def nbytes(self) -> int:
        return self.payload.length


@dataclass(frozen=True)
class LeafIndex:
    """A parsed checkpoint file: a plain array, or `weight` + `scales` of a QuantizedWeight8bit."""

    source: Path
    array: ArrayRef | None = None
    weight: ArrayRef | None = None
    scales: ArrayRef | None = None

    @property
    def quantized(self) -> bool:
        return self.weight is not None

    def arrays(self) -> list[ArrayRef]:
        return [self.array] if self.array is not None else [a for a in (self.weight, self.scales) if a]


def _describe(obj: object) -> str:
    """A pickled dtype argument in words, for errors ('f8' -> "'f8' (float64)")."""
    if isinstance(obj, str) and len(obj) <= 8:
        try:
            return f"{obj!r} ({np.dtype(obj).name})"  # a type code string: builds no pickled state
        except TypeError:
            pass
    return repr(obj)[:100]


class _DtypeDescriptor:
    """What `numpy.dtype(obj, align, copy)` + its pickled state describe; checked, never applied."""

    def __init__(self, obj: object, align: object = False, copy: object = True) -> None:
        if isinstance(obj, str) and obj in _BUILTIN_DTYPES:
            self.name, self._orders = _BUILTIN_DTYPES[obj]
        elif obj is _BFLOAT16_TYPE:
            self.name, self._orders = "bfloat16", ("<", "=")
        else:
            raise CheckpointFormatError(
                f"numpy dtype {_describe(obj)}; release checkpoints hold float32, int8 and bfloat16 only"
            )
        if align is not False:
            raise CheckpointFormatError(f"{self.name} dtype pickled with align={align!r}; expected False")
        self.checked = False

    def __setstate__(self, state: object) -> None:
        """Check numpy's dtype state tuple (version, byteorder, subarray, names, fields, elsize,
        alignment, flags[, metadata]) against the descriptor of this dtype. The flags are not
        checked: they differ between ml_dtypes versions and are never applied."""
        if self.checked:
            raise CheckpointFormatError(f"{self.name} dtype state given twice")
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
            raise CheckpointFormatError(f"{self.name} dtype with an unknown state layout {state!r:.200}")
        order, subarray, names, fields, elsize, alignment = state[1:7]
        metadata = state[8] if len(state) == 9 else None
        size = DTYPES[self.name].itemsize
        expect_size = (size, size) if self.name == "bfloat16" else (-1, -1)
        if (
            order not in self._orders
            or (subarray, names, fields, metadata) != (None, None, None, None)
            or (elsize, alignment) != expect_size
        ):
            raise CheckpointFormatError(
                f"{self.name} dtype described as byte order {order!r}, item size {elsize!r}, alignment "
                f"{alignment!r}, fields {names!r}; the format's {self.name} is little-endian with item "
                f"size {size} and no fields (the file may be crafted or from another format)"
            )
        self.checked = True


class _ArrayBuilder:
    """What numpy's `_reconstruct(ndarray, (0,), b'b')` + `__setstate__` describe, as an `ArrayRef`."""

    def __init__(self, cls: object, shape: object, typecode: object) -> None:
        if cls is not _NDARRAY or shape != (0,) or typecode != b"b":
            raise CheckpointFormatError("numpy array reconstruction with unexpected arguments")
        self.ref: ArrayRef | None = None
        self.source = Path()

    def __setstate__(self, state: object) -> None:
        if self.ref is not None:
            raise CheckpointFormatError("numpy array state given twice")
        if not isinstance(state, tuple) or len(state) != 5 or state[0] != 1:
            raise CheckpointFormatError("numpy array with an unknown state layout")
        _, shape, dtype, fortran, raw = state
        if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
            raise CheckpointFormatError(f"array shape {shape!r:.200} is not a tuple of sizes")
        if not isinstance(dtype, _DtypeDescriptor) or not dtype.checked:
            raise CheckpointFormatError("array dtype is not a numpy dtype with its state")
        if fortran is not False and sum(d > 1 for d in shape) > 1:
            raise CheckpointFormatError("array stored in Fortran order; the format stores C order")
        if isinstance(raw, bytes):
            payload = Payload(offset=-1, length=len(raw), inline=raw)
        elif isinstance(raw, Payload):
            payload = raw
        else:
            raise CheckpointFormatError(f"array data is a {type(raw).__name__}, expected bytes")
        want = math.prod(shape) * DTYPES[dtype.name].itemsize
        if payload.length != want:
            raise CheckpointFormatError(
                f"array {dtype.name}{list(shape)} needs {want} bytes but its data holds {payload.length}"
            )
        self.ref = ArrayRef(self.source, DTYPES[dtype.name], shape, payload)


class _QuantizedBuilder:
    """The release's `QuantizedWeight8bit` dataclass, rebuilt from its pickled field dict only."""

    state: dict[str, object] | None

    def __new__(cls, *args: object) -> _QuantizedBuilder:
        if args:
            raise CheckpointFormatError("QuantizedWeight8bit constructed with arguments")
        self = object.__new__(cls)
        self.state = None
        return self

    def __setstate__(self, state: object) -> None:
        if self.state is not None or not isinstance(state, dict):
            raise CheckpointFormatError("QuantizedWeight8bit state is not one field dict")
        if set(state) != {"weight", "scales"}:
            raise CheckpointFormatError(
                f"QuantizedWeight8bit has fields {sorted(map(str, state))}, expected ['scales', 'weight']"
            )
        self.state = state


#: (module, name) -> placeholder: everything a release pickle may name, and nothing else.
_ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _ArrayBuilder,
    ("numpy._core.multiarray", "_reconstruct"): _ArrayBuilder,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DtypeDescriptor,
    ("ml_dtypes", "bfloat16"): _BFLOAT16_TYPE,
    ("__main__", "QuantizedWeight8bit"): _QuantizedBuilder,
    ("model", "QuantizedWeight8bit"): _QuantizedBuilder,
}


class _BoundedFile:
    """The file as the parser sees it: reads never ask for more than the bytes left, so a length
    field cannot make Python allocate a buffer larger than the file."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self.size = size

    def tell(self) -> int:
        return self._f.tell()

    def read(self, n: int = -1) -> bytes:
        left = self.size - self._f.tell()
        return self._f.read(left if n < 0 else min(n, left))

    def readline(self) -> bytes:
        return self._f.readline(self.size - self._f.tell())

    def readinto(self, buf: Any) -> int:  # only reached through opcodes refused below
        raise CheckpointFormatError("protocol-5 out-of-band buffers are not part of the format")

    def skip(self, n: int) -> None:
        self._f.seek(n, os.SEEK_CUR)


class _IndexUnpickler(pickle._Unpickler):
    """Pure-Python pickle machine whose globals are placeholders and whose large byte strings are
    recorded as file ranges instead of read (see the module docstring)."""

    # Set by pickle._Unpickler.load(); declared for the type checker (typeshed omits them).
    _unframer: Any
    append: Callable[[object], None]
    read: Callable[[int], bytes]

    def __init__(self, file: _BoundedFile) -> None:
        super().__init__(file)
        self._bounded = file

    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise CheckpointFormatError(
                f"refusing to unpickle {module}.{name}; a Grok-1 checkpoint file holds only numpy arrays "
                "and QuantizedWeight8bit. The file is not a release checkpoint (or was tampered with): "
                "do not load it."
            ) from None

    def persistent_load(self, pid: object) -> object:
        raise CheckpointFormatError("persistent ids are not part of the format")

    def _payload(self, length: int) -> None:
        frame = self._unframer.current_frame
        if frame is not None and frame.getbuffer().nbytes > frame.tell():
            self.append(self.read(length))  # inside a frame: a small array, read with the frame
            return
        self._unframer.current_frame = None
        offset = self._bounded.tell()
        if offset + length > self._bounded.size:
            raise CheckpointFormatError(
                f"an array claims {length} bytes at offset {offset} but the file ends at "
                f"{self._bounded.size} (truncated file?)"
            )
        self._bounded.skip(length)
        self.append(Payload(offset=offset, length=length))

    def _load_binbytes(self) -> None:
        (length,) = struct.unpack("<I", self.read(4))
        self._payload(length)

    def _load_binbytes8(self) -> None:
        (length,) = struct.unpack("<Q", self.read(8))
        self._payload(length)

    def _refuse(self) -> None:
        raise CheckpointFormatError("protocol-5 byte arrays and buffers are not part of the format")

    dispatch: ClassVar[dict[int, Callable[[Any], None]]] = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BINBYTES[0]] = _load_binbytes
    dispatch[pickle.BINBYTES8[0]] = _load_binbytes8
    for _op in (pickle.BYTEARRAY8, pickle.NEXT_BUFFER, pickle.READONLY_BUFFER):
        dispatch[_op[0]] = _refuse


def _array_ref(value: object, what: str, source: Path) -> ArrayRef:
    if not isinstance(value, _ArrayBuilder) or value.ref is None:
        raise CheckpointFormatError(f"{what} is a {type(value).__name__}, expected a numpy array")
    return ArrayRef(source, value.ref.dtype, value.ref.shape, value.ref.payload)


def _parse(f: BinaryIO, size: int, source: Path) -> LeafIndex:
    value = _IndexUnpickler(_BoundedFile(f, size)).load()
    if isinstance(value, _QuantizedBuilder):
        if value.state is None:
            raise CheckpointFormatError("QuantizedWeight8bit without its fields")
        return LeafIndex(
            source,
            weight=_array_ref(value.state["weight"], "QuantizedWeight8bit.weight", source),
            scales=_array_ref(value.state["scales"], "QuantizedWeight8bit.scales", source),
        )
    return LeafIndex(source, array=_array_ref(value, "the pickled value", source))


def index_leaf(path: Path) -> tuple[LeafIndex, int]:
    """Parse one checkpoint file; returns its index and the bytes the parser read (metadata and
    in-frame arrays). Errors name the file and say what is wrong."""
    try:
        with open(path, "rb", buffering=0) as f:  # unbuffered: every byte counted was asked for
            size = os.fstat(f.fileno()).st_size
            index = _parse(f, size, path)
            return index, f.tell() - sum(a.nbytes for a in index.arrays() if a.payload.inline is None)
    except FileNotFoundError:
        raise CheckpointFormatError(f"{path}: file is missing from the checkpoint") from None
    except CheckpointFormatError as e:
        raise CheckpointFormatError(f"{path}: {e}") from None
    except (Exception, pickle.UnpicklingError) as e:  # any failure of the parser is a bad file
        raise CheckpointFormatError(
            f"{path}: not a readable checkpoint pickle (truncated or corrupt file?): {type(e).__name__}: "
            f"{str(e)[:200]}"
        ) from None


__all__ = ["DTYPES", "ArrayRef", "LeafIndex", "Payload", "index_leaf"]
