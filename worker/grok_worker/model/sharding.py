"""Sharding: the plan's rule table (`grok_worker.shard_plan`) turned into JAX meshes and shardings.

The model's math never mentions devices. Each tensor names its dimensions with logical axes
(`shard_plan.PARAM_AXES`, `CACHE_AXES`); `shard_plan.layout()` resolves the rule table for a model
on a mesh (which mesh axes split each logical axis), and this module only builds `Mesh` and
`NamedSharding`s from that layout, so the worker, the operator and `grok-worker plan` agree on every
slice. With no mesh every function here is a no-op (None shardings).

The forward pass runs per device under `shard_map` (`grok_worker.model.parallel`) with the same
layout, so every collective is explicit: only activations cross devices, never weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax
import numpy as np
from jax.sharding import AbstractMesh, Mesh, NamedSharding, PartitionSpec

from grok_worker.contract import MeshSpec
from grok_worker.model.cache import KVCache
from grok_worker.model.layers import QuantizedWeight
from grok_worker.model.params import Params
from grok_worker.model_config import ModelConfig, Quantization, TensorSpec
from grok_worker.shard_plan import CACHE_AXES, MESH_AXES, PARAM_AXES, Layout, cache_shapes, layout, scale_axes

__all__ = [
    "MESH_AXES",
    "GroupSpecs",
    "cache_shardings",
    "group_specs",
    "layout_of_mesh",
    "make_mesh",
    "param_shardings",
    "param_specs",
    "partition_spec",
    "quantization_of",
    "replicated",
    "shard_cache",
    "shard_params",
    "spec_shardings",
]


def make_mesh(
    spec: MeshSpec, devices: Sequence[jax.Device] | None = None, cfg: ModelConfig | None = None
) -> Mesh:
    """The ("data", "expert", "model_kv", "model_q") mesh over `devices` (default: all devices of all
    processes). `cfg` decides how "model" splits into model_kv × model_q (without it: model_kv = model)."""
    devs = list(jax.devices() if devices is None else devices)
    if len(devs) != spec.size:
        raise ValueError(
            f"mesh {spec.to_env()} needs {spec.size} devices but {len(devs)} are available; set the mesh "
            f"(GROK_MESH / config mesh) so data·expert·model = {len(devs)}"
        )
    shape = layout(cfg, spec).mesh_shape if cfg is not None else (spec.data, spec.expert, spec.model, 1)
    return Mesh(np.array(devs, dtype=object).reshape(shape), MESH_AXES)


def layout_of_mesh(cfg: ModelConfig, mesh: Mesh | AbstractMesh) -> Layout:
    """The plan's layout for a mesh built by `make_mesh` (its model_kv/model_q split is honoured)."""
    sizes = dict(mesh.shape)
    spec = MeshSpec(data=sizes["data"], expert=sizes["expert"], model=sizes["model_kv"] * sizes["model_q"])
    lay = layout(cfg, spec)
    if (lay.model_kv, lay.model_q) != (sizes["model_kv"], sizes["model_q"]):
        # A mesh made without cfg: keep its split and shard KV heads only where it allows.
        splits = tuple((k, v) for k, v in lay.splits if k not in ("q_heads", "kv_heads"))
        lay = Layout(spec.data, spec.expert, sizes["model_kv"], sizes["model_q"], splits)
    return lay


def partition_spec(lay: Layout, axes: tuple[str, ...], shape: tuple[int, ...]) -> PartitionSpec:
    """The layout applied to one tensor: each dimension over its mesh axes, or replicated."""
    dims = [split[0] if len(split) == 1 else (split or None) for split in lay.dim_axes(axes, shape)]
    return PartitionSpec(*dims)  # type: ignore[no-untyped-call]


def _spec_shardings_one(spec: TensorSpec, lay: Layout, mesh: Mesh) -> list[NamedSharding]:
    out = [NamedSharding(mesh, partition_spec(lay, PARAM_AXES[spec.key], spec.shape))]
    if spec.quantized:
        out.append(NamedSharding(mesh, partition_spec(lay, scale_axes(spec), spec.scales_shape)))
    return out


def spec_shardings(
    cfg: ModelConfig, quantization: Quantization, mesh: Mesh | None
) -> dict[int, list[NamedSharding | None]]:
    """Release leaf index -> [weight sharding] or [weight, scales] shardings (None without a mesh)."""
    lay = layout_of_mesh(cfg, mesh) if mesh is not None else None
    result: dict[int, list[NamedSharding | None]] = {}
    for s in cfg.tensor_specs(quantization):
        result[s.index] = (
            [None, None] if mesh is None or lay is None else list(_spec_shardings_one(s, lay, mesh))
        )
    return result


def param_shardings(cfg: ModelConfig, quantization: Quantization, mesh: Mesh) -> Params:
    """A Params-shaped pytree of NamedShardings (for jit in/out shardings or device_put)."""
    from grok_worker.model.params import params_from_leaves

    lay = layout_of_mesh(cfg, mesh)
    leaves = {}
    for s in cfg.tensor_specs(quantization):
        sh = _spec_shardings_one(s, lay, mesh)
        leaves[s.index] = QuantizedWeight(sh[0], sh[1]) if s.quantized else sh[0]  # type: ignore[arg-type]
    return params_from_leaves(cfg, leaves, quantization)  # type: ignore[arg-type]


def shard_params(params: Params, cfg: ModelConfig, quantization: Quantization, mesh: Mesh | None) -> Params:
    """Place params on the mesh by the plan (no-op without a mesh)."""
    if mesh is None:
        return params
    result: Params = jax.device_put(params, param_shardings(cfg, quantization, mesh))
    return result


def cache_shardings(cfg: ModelConfig, mesh: Mesh, batch: int, max_len: int) -> KVCache:
    """A KVCache-shaped pytree of NamedShardings for a cache of this batch and length."""
    lay = layout_of_mesh(cfg, mesh)
    shapes = cache_shapes(cfg, batch, max_len)
    return KVCache(
        **{n: NamedSharding(mesh, partition_spec(lay, CACHE_AXES[n], shapes[n])) for n in KVCache._fields}  # type: ignore[arg-type]
    )


def shard_cache(cache: KVCache, cfg: ModelConfig, mesh: Mesh | None) -> KVCache:
    """Place a cache on the mesh by the plan (no-op without a mesh)."""
    if mesh is None:
        return cache
    result: KVCache = jax.device_put(cache, cache_shardings(cfg, mesh, cache.batch, cache.max_len))
    return result


def param_specs(cfg: ModelConfig, quantization: Quantization, lay: Layout) -> Params:
    """A Params-shaped pytree of PartitionSpecs (shard_map's in_specs for the weights)."""
    from grok_worker.model.params import params_from_leaves

    leaves: dict[int, object] = {}
    for s in cfg.tensor_specs(quantization):
        w = partition_spec(lay, PARAM_AXES[s.key], s.shape)
        scales = partition_spec(lay, scale_axes(s), s.scales_shape) if s.quantized else None
        leaves[s.index] = w if scales is None else QuantizedWeight(w, scales)  # type: ignore[arg-type]
    return params_from_leaves(cfg, leaves, quantization)  # type: ignore[arg-type]


def cache_specs(cfg: ModelConfig, lay: Layout, batch: int, max_len: int) -> KVCache:
    shapes = cache_shapes(cfg, batch, max_len)
    return KVCache(**{n: partition_spec(lay, CACHE_AXES[n], shapes[n]) for n in KVCache._fields})  # type: ignore[arg-type]


@dataclass(frozen=True)
class GroupSpecs:
    """shard_map specs of one group of rows of `transformer.forward_groups` (same slices as the plan)."""

    rows: PartitionSpec  # tokens and positions [B, T]
    cache: KVCache
    routes: PartitionSpec | None  # forced routes [L, B, T, k], when given
    logits: PartitionSpec  # [B, T, V]


def group_specs(cfg: ModelConfig, lay: Layout, batch: int, max_len: int, with_routes: bool) -> GroupSpecs:
    """The specs of a group of `batch` rows over a cache of `max_len` positions."""
    routes = partition_spec(lay, ("layers", "batch", "seq", "route"), (cfg.n_layers, batch, 1, 1))
    return GroupSpecs(
        rows=partition_spec(lay, ("batch", "seq"), (batch, 1)),
        cache=cache_specs(cfg, lay, batch, max_len),
        routes=routes if with_routes else None,
        logits=partition_spec(lay, ("batch", "seq", "vocab"), (batch, 1, cfg.vocab_size)),
    )


def quantization_of(params: Params) -> Quantization:
    return "int8" if isinstance(params.layers[0]["wq"], QuantizedWeight) else "bf16"


def replicated(mesh: Mesh | None) -> NamedSharding | None:
    """Sharding for small inputs every device needs whole (tokens, positions)."""
    return None if mesh is None else NamedSharding(mesh, PartitionSpec())  # type: ignore[no-untyped-call]
