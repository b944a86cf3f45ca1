"""Sharding: logical axis names for weights and the KV cache, and ONE rule table onto the mesh.

The model's math never mentions devices. Each tensor names its dimensions with logical axes
(`PARAM_AXES`, `CACHE_AXES`); `RULES` maps a logical axis to a mesh axis ("data", "expert",
"model" — contract.MeshSpec). A dimension is sharded only when its mesh axis has more than one
device and divides the dimension (for head axes: the head count, so heads are never split);
otherwise it is replicated. With no mesh every function here is a no-op (None shardings).

Defaults: tensor parallelism over "model" (query/kv heads, expert FFN width, vocabulary),
expert parallelism over "expert" (the experts axis of the expert weights), batch over "data".
jit propagates these through the forward pass (GSPMD); collectives are inserted by XLA.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import AbstractMesh, Mesh, NamedSharding, PartitionSpec

from grok_worker.contract import MeshSpec
from grok_worker.model.cache import KVCache
from grok_worker.model.layers import QuantizedWeight
from grok_worker.model.params import Params
from grok_worker.model_config import ModelConfig, Quantization, TensorSpec

MESH_AXES = ("data", "expert", "model")

#: The rule table: logical axis -> mesh axis (None: always replicated).
RULES: dict[str, str | None] = {
    "batch": "data",
    "vocab": "model",
    "embed": None,
    "q_heads": "model",
    "kv_heads": "model",
    "ffn": "model",
    "expert": "expert",
    "layers": None,
    "seq": None,
    "head_dim": None,
    "scale_groups": None,
    "norm": None,
    "route": None,
}

#: Logical axes of each params entry (weights; the scales of an int8 weight use the same axes with
#: the input axis replaced by "scale_groups").
PARAM_AXES: dict[str, tuple[str, ...]] = {
    "embed": ("vocab", "embed"),
    "final_norm": ("norm",),
    "attn_norm": ("norm",),
    "attn_out_norm": ("norm",),
    "moe_norm": ("norm",),
    "moe_out_norm": ("norm",),
    "router": ("embed", "route"),
    "wq": ("embed", "q_heads"),
    "wk": ("embed", "kv_heads"),
    "wv": ("embed", "kv_heads"),
    "wo": ("q_heads", "embed"),
    "w_gate": ("expert", "embed", "ffn"),
    "w_value": ("expert", "embed", "ffn"),
    "w_down": ("expert", "ffn", "embed"),
}

#: KV cache: k/v [layers, batch, max_len, kv_heads, head_dim], valid [batch, max_len], lengths [batch].
CACHE_AXES: dict[str, tuple[str, ...]] = {
    "k": ("layers", "batch", "seq", "kv_heads", "head_dim"),
    "v": ("layers", "batch", "seq", "kv_heads", "head_dim"),
    "valid": ("batch", "seq"),
    "lengths": ("batch",),
}


def make_mesh(spec: MeshSpec, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ("data", "expert", "model") mesh over `devices` (default: all devices of all processes)."""
    devs = list(jax.devices() if devices is None else devices)
    if len(devs) != spec.size:
        raise ValueError(
            f"mesh {spec.to_env()} needs {spec.size} devices but {len(devs)} are available; set the mesh "
            f"(GROK_MESH / config mesh) so data·expert·model = {len(devs)}"
        )
    grid = np.array(devs, dtype=object).reshape(spec.data, spec.expert, spec.model)
    return Mesh(grid, MESH_AXES)


def _head_units(cfg: ModelConfig) -> dict[str, int]:
    """The unit a logical axis may be split into: heads are split whole, never across a head."""
    return {"q_heads": cfg.n_q_heads, "kv_heads": cfg.n_kv_heads}


def partition_spec(
    axes: tuple[str, ...],
    shape: tuple[int, ...],
    mesh: Mesh | AbstractMesh,
    units: dict[str, int] | None = None,
) -> PartitionSpec:
    """Apply the rule table to one tensor: shard a dim when its mesh axis divides it, else replicate."""
    units = units or {}
    out: list[str | None] = []
    used: set[str] = set()
    for name, size in zip(axes, shape, strict=True):
        mesh_axis = RULES.get(name)
        n = mesh.shape.get(mesh_axis, 1)
        count = units.get(name, size)
        if mesh_axis is None or n == 1 or mesh_axis in used or count % n or size % n:
            out.append(None)
        else:
            out.append(mesh_axis)
            used.add(mesh_axis)
    return PartitionSpec(*out)  # type: ignore[no-untyped-call]


def _named(mesh: Mesh, axes: tuple[str, ...], shape: tuple[int, ...], cfg: ModelConfig) -> NamedSharding:
    return NamedSharding(mesh, partition_spec(axes, shape, mesh, _head_units(cfg)))


def _spec_shardings_one(spec: TensorSpec, cfg: ModelConfig, mesh: Mesh) -> list[NamedSharding]:
    axes = PARAM_AXES[spec.key]
    out = [_named(mesh, axes, spec.shape, cfg)]
    if spec.quantized:
        scale_axes = (*axes[:-2], "scale_groups", axes[-1])
        out.append(_named(mesh, scale_axes, spec.scales_shape, cfg))
    return out


def spec_shardings(
    cfg: ModelConfig, quantization: Quantization, mesh: Mesh | None
) -> dict[int, list[NamedSharding | None]]:
    """Release leaf index -> [weight sharding] or [weight, scales] shardings (None without a mesh)."""
    result: dict[int, list[NamedSharding | None]] = {}
    for s in cfg.tensor_specs(quantization):
        result[s.index] = [None, None] if mesh is None else list(_spec_shardings_one(s, cfg, mesh))
    return result


def param_shardings(cfg: ModelConfig, quantization: Quantization, mesh: Mesh) -> Params:
    """A Params-shaped pytree of NamedShardings (for jit in/out shardings or device_put)."""
    from grok_worker.model.params import params_from_leaves

    leaves = {}
    for s in cfg.tensor_specs(quantization):
        sh = _spec_shardings_one(s, cfg, mesh)
        leaves[s.index] = QuantizedWeight(sh[0], sh[1]) if s.quantized else sh[0]  # type: ignore[arg-type]
    return params_from_leaves(cfg, leaves, quantization)  # type: ignore[arg-type]


def shard_params(params: Params, cfg: ModelConfig, quantization: Quantization, mesh: Mesh | None) -> Params:
    """Place params on the mesh by the rule table (no-op without a mesh)."""
    if mesh is None:
        return params
    result: Params = jax.device_put(params, param_shardings(cfg, quantization, mesh))
    return result


def cache_shardings(cfg: ModelConfig, mesh: Mesh, batch: int, max_len: int) -> KVCache:
    """A KVCache-shaped pytree of NamedShardings for a cache of this batch and length."""
    kv_shape = (cfg.n_layers, batch, max_len, cfg.n_kv_heads, cfg.head_dim)
    shapes = {"k": kv_shape, "v": kv_shape, "valid": (batch, max_len), "lengths": (batch,)}
    return KVCache(**{name: _named(mesh, CACHE_AXES[name], shapes[name], cfg) for name in KVCache._fields})  # type: ignore[arg-type]


def shard_cache(cache: KVCache, cfg: ModelConfig, mesh: Mesh | None) -> KVCache:
    """Place a cache on the mesh by the rule table (no-op without a mesh)."""
    if mesh is None:
        return cache
    result: KVCache = jax.device_put(cache, cache_shardings(cfg, mesh, cache.batch, cache.max_len))
    return result


def replicated(mesh: Mesh | None) -> NamedSharding | None:
    """Sharding for small inputs every device needs whole (tokens, positions)."""
    return None if mesh is None else NamedSharding(mesh, PartitionSpec())  # type: ignore[no-untyped-call]
