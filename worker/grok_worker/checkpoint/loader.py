"""Load a release-format checkpoint straight onto devices, in parallel, checking every tensor.

Data flow per leaf (a thread pool runs several at once, in file order):
  file -> `read_leaf` (restricted unpickle) -> check shape/dtype against `ModelConfig.tensor_specs`
  -> convert to the device dtype (embedding float32 -> bf16; bf16 mode: matrices -> bf16)
  -> `jax.make_array_from_callback` with the leaf's sharding, so each process copies only the
     slices its own devices hold -> host copy dropped.
At most `workers` leaves are in host memory at once (never the whole model, no /dev/shm).
Progress is reported as (bytes_done, bytes_total) of checkpoint file bytes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from jax.sharding import Mesh, NamedSharding, Sharding

from grok_worker.checkpoint.release_format import (
    CKPT_DIR,
    CheckpointFormatError,
    QuantizedWeight8bit,
    leaf_file_name,
    read_leaf,
)
from grok_worker.model.layers import QuantizedWeight, Weight
from grok_worker.model.params import Params, params_from_leaves
from grok_worker.model.sharding import spec_shardings
from grok_worker.model_config import ModelConfig, Quantization, TensorSpec

Progress = Callable[[int, int], None]


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


def _check_shape(
    spec: TensorSpec, source: Path, what: str, actual: tuple[int, ...], expected: tuple[int, ...]
) -> None:
    if actual != expected:
        raise CheckpointFormatError(
            f"{source}: tensor {spec.path} {what} has shape {list(actual)} but the model config expects "
            f"{list(expected)}; check the model preset/dims against this checkpoint"
        )


def _to_device_dtype(
    spec: TensorSpec, value: np.ndarray | QuantizedWeight8bit, source: Path
) -> list[np.ndarray]:
    """Validate one leaf against its spec; return host arrays in device dtype ([w] or [w, scales])."""
    if isinstance(value, QuantizedWeight8bit):
        _check_shape(spec, source, "weight", value.weight.shape, spec.shape)
        if value.weight.dtype != np.int8 or value.scales.dtype != ml_dtypes.bfloat16:
            raise CheckpointFormatError(
                f"{source}: tensor {spec.path} is QuantizedWeight8bit with weight {value.weight.dtype} and "
                f"scales {value.scales.dtype}; the format has int8 weights and bfloat16 scales"
            )
        s = value.scales.shape
        k = spec.shape[-2]
        if len(s) != len(spec.shape) or s[:-2] != spec.shape[:-2] or s[-1] != spec.shape[-1] or k % s[-2]:
            raise CheckpointFormatError(
                f"{source}: tensor {spec.path} scales have shape {list(s)}; expected "
                f"{[*list(spec.shape[:-2]), 'G', spec.shape[-1]]} with G dividing {k}"
            )
        if spec.quantized:
            return [value.weight, value.scales]
        if spec.device_dtype != "bfloat16":
            raise CheckpointFormatError(
                f"{source}: tensor {spec.path} must be a float32 array, found int8 weights"
            )
        g = s[-2]
        blocks = value.weight.astype(np.float32).reshape(*spec.shape[:-2], g, k // g, spec.shape[-1])
        deq = blocks * value.scales.astype(np.float32)[..., :, None, :]
        return [deq.reshape(spec.shape).astype(ml_dtypes.bfloat16)]
    _check_shape(spec, source, "array", value.shape, spec.shape)
    if spec.quantized:
        raise CheckpointFormatError(
            f"{source}: tensor {spec.path} is a plain {value.dtype} array but int8 weights were asked for; "
            "this looks like a bf16 checkpoint: set model.quantization to bf16"
        )
    want = np.dtype(np.float32) if spec.device_dtype == "float32" else None
    if want is not None and value.dtype != want:
        raise CheckpointFormatError(
            f"{source}: tensor {spec.path} has dtype {value.dtype}; the release stores it as float32"
        )
    if value.dtype not in (np.dtype(np.float32), np.dtype(ml_dtypes.bfloat16)):
        raise CheckpointFormatError(f"{source}: tensor {spec.path} has dtype {value.dtype}; expected float32")
    if spec.device_dtype == "bfloat16":
        return [value.astype(ml_dtypes.bfloat16)]
    return [value]


def _place(host: np.ndarray, sharding: Sharding | None) -> jax.Array:
    """Put a host array on devices; with a sharding, each device receives only its own slice."""
    if sharding is None:
        return jnp.asarray(host)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _expected_files(directory: Path, specs: list[TensorSpec]) -> None:
    names = {p.name for p in directory.iterdir() if p.name.startswith("tensor")}
    extra = sorted(names - {leaf_file_name(s.index) for s in specs})
    if extra:
        raise CheckpointFormatError(
            f"{directory}: has files the model config does not expect (first: {extra[0]}); the config has "
            f"{len(specs)} tensors ({specs[-1].path} last): check n_layers / the preset, or multi-host shards"
        )


def load_checkpoint(
    path: str | Path,
    cfg: ModelConfig,
    mesh: Mesh | None = None,
    progress: Progress | None = None,
    quantization: Quantization = "int8",
    workers: int | None = None,
) -> Params:
    """Read a release-format checkpoint into sharded Params (see the module docstring)."""
    directory = checkpoint_dir(path)
    specs = cfg.tensor_specs(quantization)
    _expected_files(directory, specs)
    shardings = spec_shardings(cfg, quantization, mesh)
    files = [directory / leaf_file_name(s.index) for s in specs]
    missing = [(s, f) for s, f in zip(specs, files, strict=True) if not f.exists()]
    if missing:
        s, f = missing[0]
        raise CheckpointFormatError(
            f"{f}: missing; it should hold tensor {s.path} ({len(missing)} files missing)"
        )
    sizes = [f.stat().st_size for f in files]
    total = sum(sizes)
    done = 0
    lock = threading.Lock()

    def load_one(i: int) -> Weight:
        nonlocal done
        spec, source = specs[i], files[i]
        arrays = _to_device_dtype(spec, read_leaf(source), source)
        placed = [_place(a, sh) for a, sh in zip(arrays, shardings[spec.index], strict=False)]
        del arrays
        if progress is not None:
            with lock:
                done += sizes[i]
                progress(done, total)
        if len(placed) == 2:
            return QuantizedWeight(weight=placed[0], scales=placed[1])
        return placed[0]

    n_workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="ckpt-load") as pool:
        leaves = dict(zip((s.index for s in specs), pool.map(load_one, range(len(specs))), strict=True))
    return params_from_leaves(cfg, leaves, quantization)


__all__ = ["CheckpointFormatError", "NamedSharding", "checkpoint_dir", "load_checkpoint"]
