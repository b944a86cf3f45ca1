"""Random weights and release-format checkpoints for the benchmarks, made quickly with numpy.

The model's own `init_params` draws every int8 weight through JAX's counter-based RNG, which takes
over a minute for the `small` preset on two cores; a benchmark only needs weights of the right
shapes, dtypes and scale (so activations stay finite and routing is spread over experts), so this
module draws them with numpy's generator (about a second) following `ModelConfig.tensor_specs()`,
and assembles them with the model's own `params_from_leaves`. Checkpoints are written with the
project's release-format writer and cached in the benchmark work directory.

Data flow: `ModelConfig` -> `host_leaves` (numpy, release leaf index -> array | QuantizedWeight)
-> `device_params` (Params on the default device) or `ensure_checkpoint` (files under DIR/ckpt-0).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import ml_dtypes
import numpy as np

from grok_worker.checkpoint import save_checkpoint
from grok_worker.model import Params, QuantizedWeight
from grok_worker.model.params import params_from_leaves
from grok_worker.model_config import ModelConfig, Quantization, TensorSpec

#: Bumped when the way checkpoints are generated changes, so stale cached ones are rewritten.
_CHECKPOINT_RECIPE = 1

HostLeaf = np.ndarray | QuantizedWeight


def _normal(rng: np.random.Generator, shape: tuple[int, ...], std: float, dtype: type) -> np.ndarray:
    out: np.ndarray = (rng.standard_normal(shape, np.float32) * np.float32(std)).astype(dtype)
    return out


def _leaf(spec: TensorSpec, rng: np.random.Generator) -> HostLeaf:
    fan_in = spec.shape[-2] if len(spec.shape) >= 2 else spec.shape[-1]
    if spec.key.endswith("norm"):
        return _normal(rng, spec.shape, 0.1, np.float32) + np.float32(1.0)
    if spec.key == "router":
        return _normal(rng, spec.shape, fan_in**-0.5, np.float32)
    if spec.key == "embed":  # rows of roughly unit norm
        return _normal(rng, spec.shape, spec.shape[1] ** -0.5, ml_dtypes.bfloat16)
    if not spec.quantized:
        dtype = ml_dtypes.bfloat16 if spec.device_dtype == "bfloat16" else np.float32
        return _normal(rng, spec.shape, fan_in**-0.5, dtype)
    weight = rng.integers(-127, 128, spec.shape, dtype=np.int8)
    # Uniform ints in [-127, 127] have a standard deviation of about 73.6.
    scales = rng.uniform(0.5, 1.5, spec.scales_shape).astype(np.float32) / (73.6 * np.sqrt(fan_in))
    return QuantizedWeight(weight=weight, scales=scales.astype(ml_dtypes.bfloat16))  # type: ignore[arg-type]


def host_leaves(cfg: ModelConfig, quantization: Quantization = "int8", seed: int = 0) -> dict[int, HostLeaf]:
    """Random weights for every release leaf of `cfg`, as numpy arrays (int8 + bf16 scales)."""
    rng = np.random.default_rng(seed)
    return {s.index: _leaf(s, rng) for s in cfg.tensor_specs(quantization)}


def device_params(cfg: ModelConfig, quantization: Quantization = "int8", seed: int = 0) -> Params:
    """Random Params on the default device, ready for the model's jitted functions."""
    leaves = {
        i: jax.tree.map(jax.device_put, leaf) for i, leaf in host_leaves(cfg, quantization, seed).items()
    }
    params = params_from_leaves(cfg, leaves, quantization)
    jax.block_until_ready(params)  # type: ignore[no-untyped-call]
    return params


def ensure_checkpoint(
    cfg: ModelConfig, workdir: Path, quantization: Quantization = "int8", seed: int = 0
) -> Path:
    """A release-format checkpoint of `cfg` under workdir (reused when already written); returns
    the folder that holds `ckpt-0/`."""
    stamp = {"recipe": _CHECKPOINT_RECIPE, "config": repr(cfg), "quantization": quantization, "seed": seed}
    root = workdir / f"ckpt-{cfg.name}-{quantization}-seed{seed}"
    marker = root / "bench-stamp.json"
    if marker.exists() and json.loads(marker.read_text()) == stamp:
        return root
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    save_checkpoint(host_leaves(cfg, quantization, seed), cfg, root, quantization)
    marker.write_text(json.dumps(stamp))
    return root


def checkpoint_files(root: Path) -> list[Path]:
    """The tensor files of a checkpoint folder made by `ensure_checkpoint`, in file order."""
    return sorted((root / "ckpt-0").glob("tensor*"))
