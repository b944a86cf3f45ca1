"""Hostile and damaged checkpoint files: no pickled state is applied, size claims are refused before
any allocation, and mutated files yield only valid arrays or CheckpointFormatError.

Fuzzing budget (hypothesis, derandomized so CI runs the same cases): 300 cases each of flipped
bytes, truncation and splicing of two valid files (a QuantizedWeight8bit whose weight lies outside
the pickle frames, and a small float32 array inside one) = 900 cases, about 5 s on this machine.
"""

from __future__ import annotations

import contextlib
import math
import pickle
import struct
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grok_worker.checkpoint import CheckpointFormatError, QuantizedWeight8bit, read_leaf, reader
from grok_worker.checkpoint.release_format import _ReleasePickler, write_leaf

BF16 = np.dtype(ml_dtypes.bfloat16)
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]


class _Reduce:
    """Pickles as `fn(*args)` followed by BUILD(state): how numpy pickles arrays and dtypes."""

    def __init__(self, fn: Any, args: tuple[Any, ...], state: Any) -> None:
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.fn, self.args, self.state)


def _bf16_dtype(itemsize: int = 2, flags: int = 64) -> _Reduce:
    return _Reduce(
        np.dtype, (ml_dtypes.bfloat16, False, True), (3, "<", None, None, None, itemsize, itemsize, flags)
    )


def _array(shape: tuple[int, ...], dtype: _Reduce, data: bytes) -> _Reduce:
    return _Reduce(_RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, shape, dtype, False, data))


def _dump(path: Path, value: Any) -> None:
    """Pickle as the release did: protocol 4, the class as `__main__.QuantizedWeight8bit`."""
    with open(path, "wb") as f:
        _ReleasePickler(f, protocol=4).dump(value)


@contextlib.contextmanager
def _memory_within(limit: int) -> Iterator[None]:
    """The Python-heap peak (tracemalloc) plus every array buffer the reader allocates (its own
    mappings, which tracemalloc does not see) stay within `limit` bytes."""
    buffers: list[int] = []
    real = reader.empty_array

    def counted(dtype: np.dtype[Any], shape: Sequence[int]) -> np.ndarray:
        buffers.append(math.prod(shape) * dtype.itemsize)
        return real(dtype, shape)

    reader.empty_array = counted  # type: ignore[assignment]
    tracemalloc.start()
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        reader.empty_array = real
    assert peak + sum(buffers) <= limit, (peak, buffers)


def _bf16_works() -> None:
    """Process-wide bfloat16, float32 and int8 behave: size, values, JAX accepts them."""
    assert BF16.itemsize == 2
    values = np.array([1.5, -2.25, 3.0], ml_dtypes.bfloat16)
    assert values.astype(np.float32).tolist() == [1.5, -2.25, 3.0]
    assert np.asarray(jnp.asarray(values) * 2).astype(np.float32).tolist() == [3.0, -4.5, 6.0]
    assert np.asarray(jnp.asarray(np.arange(3, dtype=np.float32)) + 1).tolist() == [1.0, 2.0, 3.0]
    assert np.asarray(jnp.asarray(np.array([-128, 127], np.int8))).tolist() == [-128, 127]


HOSTILE = _array((4,), _bf16_dtype(itemsize=4, flags=0x3F), bytes(16))


def test_a_pickled_dtype_that_would_corrupt_bfloat16_is_refused_and_bfloat16_still_works(
    tmp_path: Path,
) -> None:
    payload = pickle.dumps(HOSTILE, protocol=4)
    # The hazard is real: numpy's own unpickling of that dtype rewrites the process's bfloat16
    # (shown in a subprocess; there, new bf16 arrays then fail with internal errors).
    probe = (
        "import pickle, sys, numpy as np, ml_dtypes\n"
        "pickle.loads(sys.stdin.buffer.read())\n"
        "print(np.dtype(ml_dtypes.bfloat16).itemsize)"
    )
    dtype_only = pickle.dumps(_bf16_dtype(itemsize=4, flags=0x3F), protocol=4)
    damaged = subprocess.run([sys.executable, "-c", probe], input=dtype_only, capture_output=True, check=True)
    assert damaged.stdout.strip() == b"4"

    flags = BF16.flags
    bad = tmp_path / "tensor00002_000"
    bad.write_bytes(payload)
    with pytest.raises(
        CheckpointFormatError, match=r"tensor00002_000: bfloat16 dtype described as .*item size 4"
    ):
        read_leaf(bad)
    assert BF16.flags == flags
    _bf16_works()


def test_bfloat16_of_the_ml_dtypes_0_2_era_loads_without_touching_the_process_dtype(tmp_path: Path) -> None:
    scales = np.array([[0.5, 2.0]], ml_dtypes.bfloat16)
    old = _Reduce(
        QuantizedWeight8bit,
        (),
        {
            "weight": np.array([[1, -2], [3, 4]], np.int8),
            "scales": _array((1, 2), _bf16_dtype(flags=80), scales.tobytes()),
        },
    )
    path = tmp_path / "tensor00003_000"
    _dump(path, old)
    flags = BF16.flags
    leaf = read_leaf(path)
    assert isinstance(leaf, QuantizedWeight8bit)
    assert leaf.scales.dtype == BF16
    assert leaf.scales.tobytes() == scales.tobytes()
    assert BF16.flags == flags
    _bf16_works()


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (
            _array(
                (1 << 40,),
                _Reduce(np.dtype, ("i1", False, True), (3, "|", None, None, None, -1, -1, 0)),
                bytes(16),
            ),
            r"int8\[1099511627776\] needs 1099511627776 bytes but its data holds 16",
        ),
        (
            _array(
                (2, 2),
                _Reduce(np.dtype, ("f8", False, True), (3, "<", None, None, None, -1, -1, 0)),
                bytes(32),
            ),
            r"numpy dtype 'f8' \(float64\)",
        ),
        (
            _array(
                (4,), _Reduce(np.dtype, ("f4", False, True), (3, ">", None, None, None, -1, -1, 0)), bytes(16)
            ),
            r"float32 dtype described as byte order '>'",
        ),
        (
            _Reduce(QuantizedWeight8bit, (), {"weight": np.zeros(2, np.int8), "extra": 1}),
            r"fields \['extra', 'weight'\]",
        ),
    ],
)
def test_crafted_descriptions_are_refused_naming_the_problem(tmp_path: Path, value: Any, match: str) -> None:
    path = tmp_path / "tensor00004_000"
    _dump(path, value)
    with _memory_within(1 << 20), pytest.raises(CheckpointFormatError, match=match):
        read_leaf(path)
    _bf16_works()


def _big_leaf(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    weight = rng.integers(-128, 128, (4, 64, 320), dtype=np.int8)  # 80 KiB: outside the pickle frames
    scales = rng.standard_normal((4, 1, 320)).astype(ml_dtypes.bfloat16)
    path = tmp_path / "tensor00002_000"
    write_leaf(path, QuantizedWeight8bit(weight=weight, scales=scales))
    return path


def test_a_byte_count_beyond_the_file_is_refused_before_allocating(tmp_path: Path) -> None:
    path = _big_leaf(tmp_path)
    data = path.read_bytes()
    header = b"B" + struct.pack("<I", 4 * 64 * 320)
    assert data.count(header) == 1
    path.write_bytes(data.replace(header, b"B" + struct.pack("<I", 0xFFFF0000)))
    claim = r"claims 4294901760 bytes at offset \d+ but the file ends"
    with _memory_within(2 * len(data) + (1 << 20)), pytest.raises(CheckpointFormatError, match=claim):
        read_leaf(path)


def _check_mutant(path: Path, data: bytes) -> None:
    """A mutated file yields valid arrays or CheckpointFormatError, within memory O(file size)."""
    path.write_bytes(data)
    with _memory_within(3 * len(data) + (1 << 20)):
        try:
            leaf = read_leaf(path)
        except CheckpointFormatError:
            return
    arrays = [leaf.weight, leaf.scales] if isinstance(leaf, QuantizedWeight8bit) else [leaf]
    for a in arrays:
        assert isinstance(a, np.ndarray)
        assert a.dtype in (np.dtype(np.float32), np.dtype(np.int8), BF16)
        assert a.nbytes <= len(data)


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    d = tmp_path_factory.mktemp("originals")
    small = d / "tensor00001_000"
    write_leaf(small, np.linspace(-1, 1, 64, dtype=np.float32))
    return [_big_leaf(d).read_bytes(), small.read_bytes()]


_FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@_FUZZ
@given(
    which=st.integers(0, 1),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=8),
)
def test_fuzz_flipped_bytes(
    tmp_path: Path, originals: list[bytes], which: int, flips: list[tuple[float, int]]
) -> None:
    data = bytearray(originals[which])
    for where, xor in flips:
        # flips land in the first 600 bytes (the pickle's opcodes) half of the time
        at = int(where * (600 if xor % 2 else len(data))) % len(data)
        data[at] ^= xor
    _check_mutant(tmp_path / "tensor00002_000", bytes(data))


@_FUZZ
@given(which=st.integers(0, 1), cut=st.floats(0, 1, exclude_max=True))
def test_fuzz_truncated(tmp_path: Path, originals: list[bytes], which: int, cut: float) -> None:
    data = originals[which]
    _check_mutant(tmp_path / "tensor00002_000", data[: int(cut * len(data))])


@_FUZZ
@given(a=st.integers(0, 1), b=st.integers(0, 1), i=st.floats(0, 1), j=st.floats(0, 1))
def test_fuzz_spliced(tmp_path: Path, originals: list[bytes], a: int, b: int, i: float, j: float) -> None:
    x, y = originals[a], originals[b]
    _check_mutant(tmp_path / "tensor00002_000", x[: int(i * len(x))] + y[int(j * len(y)) :])
