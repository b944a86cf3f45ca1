"""Load a release-format checkpoint onto devices, each process reading only its devices' slices.

Data flow:
  1. `manifest.check_files`: every file present; sizes against the manifest when there is one (and
     sha256 digests too when asked), before anything is parsed.
  2. `index_leaf` per file (thread pool): the pickle parsed without applying any state; arrays
     located as (offset, length), not read. Each leaf checked against `ModelConfig.tensor_specs`
     (shape, dtype, scale groups) before any tensor byte is read.
  3. Per leaf, the boxes this process must read: for each array, the distinct index boxes of the
     addressable devices under its sharding (`addressable_devices_indices_map`); a slice replicated
     over several local devices is read once. Without a mesh, the whole array.
     bytes_to_read = sum over arrays of the bytes of the union of its boxes (scales included).
  4. `read_array` (thread pool, in file order): `os.preadv` of exactly those bytes into a buffer of
     the reader's dtype -> `jax.make_array_from_callback`: each device gets its slice, converted to
     the device dtype slice by slice (embedding float32 -> bf16; bf16 mode: int8 x scales -> bf16)
     -> host buffer dropped. At most `workers` leaves are in host memory at once.
Progress: (tensor bytes read, bytes_to_read) of this process; `LoadStats` gives the totals.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import jax
import ml_dtypes
import numpy as np
from jax.sharding import Mesh, Sharding

from grok_worker.checkpoint import manifest
from grok_worker.checkpoint.errors import CheckpointFormatError
from grok_worker.checkpoint.pickle_index import DTYPES, ArrayRef, LeafIndex, index_leaf
from grok_worker.checkpoint.reader import Box, box_of, byte_runs, full_box, read_array
from grok_worker.checkpoint.release_format import CKPT_DIR, leaf_file_name
from grok_worker.model.layers import QuantizedWeight, Weight
from grok_worker.model.params import Params, params_from_leaves
from grok_worker.model.sharding import spec_shardings
from grok_worker.model_config import ModelConfig, Quantization, TensorSpec

Progress = Callable[[int, int], None]
#: A device slice of a leaf, computed from the host buffers: index -> array in device dtype.
SliceFn = Callable[[tuple[slice, ...]], np.ndarray]


@dataclass
class LoadStats:
    """What one process read. `bytes_to_read` is this host's share as defined in the docstring."""

    files: int = 0
    file_bytes: int = 0
    bytes_to_read: int = 0
    bytes_read: int = 0
    #: Bytes the pickle parser read: metadata, and arrays under 64 KiB whole (they sit in frames).
    header_bytes: int = 0
    #: sha256 digests checked against the manifest.
    digests_verified: bool = False
    per_leaf: dict[int, int] = field(default_factory=dict)


def checkpoint_dir(path: str | Path) -> Path:
    """The `ckpt-0` folder: `path` itself if it holds tensor files, else `path/ckpt-0`."""
    p = Path(path)
    if (p / leaf_file_name(0)).exists():
        return p
    if (p / CKPT_DIR / leaf_file_name(0)).exists():
        return p / CKPT_DIR
    raise CheckpointFormatError(
        f"{p}: no release checkpoint here (expected {CKPT_DIR}/{leaf_file_name(0)}); point "
        "model.checkpoint_path at the folder that holds ckpt-0/"
    )


def _check_shape(spec: TensorSpec, source: Path, what: str, actual: tuple[int, ...]) -> None:
    if actual != spec.shape:
        raise CheckpointFormatError(
            f"{source}: tensor {spec.path} {what} has shape {list(actual)} but the model config expects "
            f"{list(spec.shape)}; check the model preset/dims against this checkpoint"
        )


def _check_quantized(spec: TensorSpec, weight: ArrayRef, scales: ArrayRef) -> None:
    _check_shape(spec, weight.source, "weight", weight.shape)
    if weight.dtype != DTYPES["int8"] or scales.dtype != DTYPES["bfloat16"]:
        raise CheckpointFormatError(
            f"{weight.source}: tensor {spec.path} is QuantizedWeight8bit with weight {weight.dtype} and "
            f"scales {scales.dtype}; the format has int8 weights and bfloat16 scales"
        )
    s, k = scales.shape, spec.shape[-2]
    if len(s) != len(spec.shape) or s[:-2] != spec.shape[:-2] or s[-1] != spec.shape[-1] or k % max(s[-2], 1):
        raise CheckpointFormatError(
            f"{weight.source}: tensor {spec.path} scales have shape {list(s)}; expected "
            f"{[*list(spec.shape[:-2]), 'G', spec.shape[-1]]} with G dividing {k}"
        )
    if not spec.quantized and spec.device_dtype != "bfloat16":
        raise CheckpointFormatError(
            f"{weight.source}: tensor {spec.path} must be a float32 array, found int8 weights"
        )


def check_leaf(spec: TensorSpec, index: LeafIndex) -> None:
    """The parsed file holds what the config says this leaf is (before any tensor byte is read)."""
    if index.weight is not None and index.scales is not None:
        _check_quantized(spec, index.weight, index.scales)
        return
    value = index.array
    assert value is not None
    _check_shape(spec, index.source, "array", value.shape)
    if spec.quantized:
        raise CheckpointFormatError(
            f"{index.source}: tensor {spec.path} is a plain {value.dtype} array but int8 weights were asked "
            "for; this looks like a bf16 checkpoint: set model.quantization to bf16"
        )
    allowed = ("float32",) if spec.device_dtype == "float32" else ("float32", "bfloat16")
    if value.dtype not in [DTYPES[a] for a in allowed]:
        raise CheckpointFormatError(
            f"{index.source}: tensor {spec.path} has dtype {value.dtype}; the release stores it as float32"
        )


def _boxes(sharding: Sharding | None, shape: tuple[int, ...]) -> list[Box]:
    """Distinct boxes of this process's devices (a replicated slice once per host)."""
    if sharding is None:
        return [full_box(shape)]
    indices = sharding.addressable_devices_indices_map(shape).values()
    seen = dict.fromkeys(box_of(i or (), shape) for i in indices)
    return list(seen)


def _scale_boxes(weight_boxes: Sequence[Box], k: int, groups: int) -> list[Box]:
    """The scale rows a dequantised box needs: group g covers weight rows [g*k/G, (g+1)*k/G)."""
    block = k // groups
    out = [(*b[:-2], (b[-2][0] // block, -(-b[-2][1] // block)), b[-1]) for b in weight_boxes]
    return list(dict.fromkeys(out))


@dataclass
class _LeafPlan:
    """One leaf: the arrays to read with their boxes, and how device slices are made of them."""

    spec: TensorSpec
    reads: list[tuple[ArrayRef, list[Box]]]
    shardings: list[Sharding | None]

    def nbytes(self) -> int:
        return sum(
            int(np.diff(byte_runs(r.shape, r.dtype.itemsize, boxes), axis=1).sum()) for r, boxes in self.reads
        )


def _plan(spec: TensorSpec, index: LeafIndex, shardings: Sequence[Sharding | None]) -> _LeafPlan:
    if index.weight is not None and index.scales is not None:
        if spec.quantized:  # int8 on device: weight and scales, each under its own sharding
            reads = [
                (index.weight, _boxes(shardings[0], index.weight.shape)),
                (index.scales, _boxes(shardings[1], index.scales.shape)),
            ]
            return _LeafPlan(spec, reads, [shardings[0], shardings[1]])
        boxes = _boxes(shardings[0], spec.shape)  # bf16 on device: dequantised slice by slice
        groups = index.scales.shape[-2]
        reads = [(index.weight, boxes), (index.scales, _scale_boxes(boxes, spec.shape[-2], groups))]
        return _LeafPlan(spec, reads, [shardings[0]])
    assert index.array is not None
    return _LeafPlan(spec, [(index.array, _boxes(shardings[0], spec.shape))], [shardings[0]])


def _rows(index: slice, k: int) -> np.ndarray:
    start, stop, _ = index.indices(k)
    return np.arange(start, stop)


def _slice_fns(spec: TensorSpec, hosts: list[np.ndarray]) -> list[SliceFn]:
    """Per device array of the leaf, a function from a device index to its slice in device dtype."""
    if len(hosts) == 2 and spec.quantized:
        weight, scales = hosts
        return [lambda i: weight[i], lambda i: scales[i]]
    if len(hosts) == 2:
        weight, scales = hosts
        block = spec.shape[-2] // scales.shape[-2]

        def dequantised(i: tuple[slice, ...]) -> np.ndarray:
            rows = _rows(i[-2], spec.shape[-2]) // block
            s = scales[i[:-2]][..., rows, :][..., i[-1]].astype(np.float32)
            return (weight[i].astype(np.float32) * s).astype(ml_dtypes.bfloat16)

        return [dequantised]
    (array,) = hosts
    if spec.device_dtype == "bfloat16" and array.dtype != DTYPES["bfloat16"]:
        return [lambda i: array[i].astype(ml_dtypes.bfloat16)]
    return [lambda i: array[i]]


def _place(shape: tuple[int, ...], sharding: Sharding | None, fn: SliceFn) -> jax.Array:
    """Put a leaf on devices; with a sharding, each device receives only its own slice."""
    if sharding is None:  # device_put, not jnp.asarray: on CPU it adopts an aligned buffer uncopied
        placed: jax.Array = jax.device_put(fn(tuple(slice(0, d) for d in shape)))
        return placed
    return jax.make_array_from_callback(shape, sharding, lambda i: fn(i or ()))


def _expected_files(directory: Path, specs: list[TensorSpec]) -> None:
    names = {p.name for p in directory.iterdir() if p.name.startswith("tensor")}
    extra = sorted(names - {leaf_file_name(s.index) for s in specs})
    if extra:
        raise CheckpointFormatError(
            f"{directory}: has files the model config does not expect (first: {extra[0]}); the config has "
            f"{len(specs)} tensors ({specs[-1].path} last): check n_layers / the preset, or multi-host shards"
        )
    missing = [s for s in specs if not (directory / leaf_file_name(s.index)).exists()]
    if missing:
        raise CheckpointFormatError(
            f"{directory / leaf_file_name(missing[0].index)}: missing; it should hold tensor "
            f"{missing[0].path} ({len(missing)} files missing)"
        )


class _Reader:
    """Reads and places leaves, counting bytes and reporting progress (one per load)."""

    def __init__(self, plans: list[_LeafPlan], stats: LoadStats, progress: Progress | None) -> None:
        self.plans = plans
        self.stats = stats
        self.progress = progress
        self.lock = threading.Lock()

    def leaf(self, i: int) -> Weight:
        plan = self.plans[i]
        hosts, read = [], 0
        for ref, boxes in plan.reads:
            array, n = read_array(ref, boxes)
            hosts.append(array)
            read += n
        shapes = [r.shape for r, _ in plan.reads] if len(plan.shardings) == 2 else [plan.spec.shape]
        fns = _slice_fns(plan.spec, hosts)
        placed = [_place(s, sh, fn) for s, sh, fn in zip(shapes, plan.shardings, fns, strict=True)]
        del hosts
        with self.lock:
            self.stats.bytes_read += read
            self.stats.per_leaf[plan.spec.index] = read
            if self.progress is not None:
                self.progress(self.stats.bytes_read, self.stats.bytes_to_read)
        if len(placed) == 2:
            return QuantizedWeight(weight=placed[0], scales=placed[1])
        return placed[0]


def load_checkpoint_with_stats(
    path: str | Path,
    cfg: ModelConfig,
    mesh: Mesh | None = None,
    progress: Progress | None = None,
    quantization: Quantization = "int8",
    workers: int | None = None,
    verify: bool = False,
    verify_progress: Progress | None = None,
) -> tuple[Params, LoadStats]:
    """Read a release-format checkpoint into sharded Params (see the module docstring)."""
    directory = checkpoint_dir(path)
    specs = cfg.tensor_specs(quantization)
    _expected_files(directory, specs)
    files = [directory / leaf_file_name(s.index) for s in specs]
    stats = LoadStats(files=len(files))
    stats.file_bytes = manifest.check_files(directory, [f.name for f in files], verify, verify_progress)
    stats.digests_verified = verify
    # Threads overlap one leaf's reads with another's conversion and placement (preadv and
    # numpy casts release the GIL); on disks and network file systems parallel reads also pay.
    n_workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="ckpt-load") as pool:
        indexed = list(pool.map(index_leaf, files))
        for spec, (index, _) in zip(specs, indexed, strict=True):
            check_leaf(spec, index)
        stats.header_bytes = sum(n for _, n in indexed)
        shardings = spec_shardings(cfg, quantization, mesh)
        plans = [_plan(s, ix, shardings[s.index]) for s, (ix, _) in zip(specs, indexed, strict=True)]
        stats.bytes_to_read = sum(p.nbytes() for p in plans)
        reader = _Reader(plans, stats, progress)
        leaves = dict(zip((s.index for s in specs), pool.map(reader.leaf, range(len(plans))), strict=True))
    return params_from_leaves(cfg, leaves, quantization), stats


def load_checkpoint(
    path: str | Path,
    cfg: ModelConfig,
    mesh: Mesh | None = None,
    progress: Progress | None = None,
    quantization: Quantization = "int8",
    workers: int | None = None,
    verify: bool = False,
) -> Params:
    """`load_checkpoint_with_stats` without the statistics."""
    return load_checkpoint_with_stats(path, cfg, mesh, progress, quantization, workers, verify)[0]


__all__ = [
    "CheckpointFormatError",
    "LoadStats",
    "checkpoint_dir",
    "load_checkpoint",
    "load_checkpoint_with_stats",
]
