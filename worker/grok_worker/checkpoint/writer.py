"""Write Params (device or numpy) as a release-format checkpoint, one leaf at a time.

Data flow: `leaves_of(params)` in release file order -> one leaf fetched to host (float32 for
plain tensors, as the release stores them; int8 + bf16 scales as `QuantizedWeight8bit`) ->
`write_leaf` -> `ckpt-0/tensor{i:05d}_000`. Only one leaf is on the host at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from grok_worker.checkpoint.release_format import CKPT_DIR, QuantizedWeight8bit, leaf_file_name, write_leaf
from grok_worker.model.layers import QuantizedWeight
from grok_worker.model.params import Params, leaves_of
from grok_worker.model_config import ModelConfig, Quantization, TensorSpec


def _host_leaf(spec: TensorSpec, leaf: Any) -> np.ndarray | QuantizedWeight8bit:
    if spec.quantized:
        if not isinstance(leaf, QuantizedWeight | QuantizedWeight8bit):
            raise TypeError(
                f"tensor {spec.path}: expected an int8 QuantizedWeight, got {type(leaf).__name__}"
            )
        weight = np.asarray(leaf.weight)
        scales = np.asarray(leaf.scales)
        if weight.dtype != np.int8 or weight.shape != spec.shape:
            raise ValueError(
                f"tensor {spec.path}: weight must be int8 {list(spec.shape)}, got {weight.dtype} {list(weight.shape)}"
            )
        return QuantizedWeight8bit(weight=weight, scales=scales.astype(ml_dtypes.bfloat16))
    array = np.asarray(leaf)
    if array.shape != spec.shape:
        raise ValueError(f"tensor {spec.path}: shape {list(array.shape)}, config expects {list(spec.shape)}")
    return array.astype(np.float32)


def write_random_checkpoint(
    cfg: ModelConfig,
    path: str | Path,
    seed: int,
    quantization: Quantization = "int8",
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write the weights `init_params(cfg, jax.random.key(seed), quantization)` would make, one
    leaf at a time (generated, written, dropped), so even the grok-1 preset never sits in memory."""
    import jax

    from grok_worker.model.params import init_leaf

    directory = Path(path) / CKPT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    key = jax.random.key(seed)
    specs = cfg.tensor_specs(quantization)
    for n, spec in enumerate(specs, 1):
        write_leaf(directory / leaf_file_name(spec.index), _host_leaf(spec, init_leaf(spec, key)))
        if progress is not None:
            progress(n, len(specs))
    return directory


def save_checkpoint(
    params: Params | Mapping[int, Any],
    cfg: ModelConfig,
    path: str | Path,
    quantization: Quantization = "int8",
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write `params` (Params, or {release leaf index: array/QuantizedWeight}) under path/ckpt-0."""
    directory = Path(path) / CKPT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    specs = cfg.tensor_specs(quantization)
    if isinstance(params, Params):
        pairs = list(leaves_of(params, cfg, quantization))
    else:
        missing = [s.path for s in specs if s.index not in params]
        if missing:
            raise ValueError(f"save_checkpoint: {len(missing)} tensors missing, first {missing[0]!r}")
        pairs = [(s, params[s.index]) for s in specs]
    for n, (spec, leaf) in enumerate(pairs, 1):
        write_leaf(directory / leaf_file_name(spec.index), _host_leaf(spec, leaf))
        if progress is not None:
            progress(n, len(pairs))
    return directory
