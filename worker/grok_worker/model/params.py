"""The params pytree, its mapping to release checkpoint leaves, and random initialisation.

`Params` holds what lives on devices: the embedding in bf16 (the release stores it in float32 and
casts it before use), float32 norms and routers, and int8 `QuantizedWeight`s (or bf16 matrices) for
attention and experts. `ModelConfig.tensor_specs()` says which leaf of the release file order each
entry is; `params_from_leaves` and `leaves_of` convert between the two views.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp

from grok_worker.model.layers import QuantizedWeight, Weight
from grok_worker.model_config import ModelConfig, Quantization, TensorSpec

Array = jax.Array


class Params(NamedTuple):
    embed: Array  # [V, D] bf16, tied with the unembedding
    final_norm: Array  # [D] f32
    layers: tuple[dict[str, Weight], ...]  # per layer, keyed as model_config.LAYER_KEYS


def params_from_leaves(cfg: ModelConfig, leaves: Mapping[int, Weight], quantization: Quantization) -> Params:
    """Assemble Params from {release leaf index: array}; every leaf must be present."""
    specs = cfg.tensor_specs(quantization)
    missing = [s.path for s in specs if s.index not in leaves]
    if missing:
        raise ValueError(f"params are missing {len(missing)} tensors, first {missing[0]!r}")
    layers: list[dict[str, Weight]] = [{} for _ in range(cfg.n_layers)]
    embed = final_norm = None
    for s in specs:
        leaf = leaves[s.index]
        if s.layer is None:
            if s.key == "embed":
                embed = leaf
            else:
                final_norm = leaf
        else:
            layers[s.layer][s.key] = leaf
    return Params(embed=embed, final_norm=final_norm, layers=tuple(layers))  # type: ignore[arg-type]


def leaves_of(
    params: Params, cfg: ModelConfig, quantization: Quantization
) -> Iterator[tuple[TensorSpec, Weight]]:
    """(spec, leaf) in release file order."""
    for s in cfg.tensor_specs(quantization):
        if s.layer is None:
            yield s, params.embed if s.key == "embed" else params.final_norm
        else:
            yield s, params.layers[s.layer][s.key]


def init_leaf(spec: TensorSpec, key: Array) -> Weight:
    """A random leaf with activations of roughly unit scale; deterministic in (key, spec.index)."""
    key = jax.random.fold_in(key, spec.index)
    if spec.key.endswith("norm"):
        return 1.0 + 0.1 * jax.random.normal(key, spec.shape, jnp.float32)
    fan_in = spec.shape[-2] if len(spec.shape) >= 2 else spec.shape[-1]
    if spec.key == "embed":
        return (jax.random.normal(key, spec.shape, jnp.float32) / jnp.sqrt(spec.shape[1])).astype(
            jnp.bfloat16
        )
    if spec.key == "router":
        return jax.random.normal(key, spec.shape, jnp.float32) / jnp.sqrt(fan_in)
    if not spec.quantized:
        return (jax.random.normal(key, spec.shape, jnp.float32) / jnp.sqrt(fan_in)).astype(jnp.bfloat16)
    k_w, k_s = jax.random.split(key)
    # Random bytes reinterpreted as int8 (much faster than randint on CPU), -128 folded to -127.
    raw = jax.lax.bitcast_convert_type(jax.random.bits(k_w, spec.shape, jnp.uint8), jnp.int8)
    weight = jnp.maximum(raw, jnp.int8(-127))
    # Uniform ints in [-127, 127] have std ≈ 73.6; vary the scales ±50 % to exercise them.
    jitter = jax.random.uniform(k_s, spec.scales_shape, jnp.float32, 0.5, 1.5)
    scales = (jitter / (73.6 * jnp.sqrt(fan_in))).astype(jnp.bfloat16)
    return QuantizedWeight(weight=weight, scales=scales)


def init_params(cfg: ModelConfig, key: Array, quantization: Quantization = "int8") -> Params:
    """Random params for `cfg` (tests, demos, benchmarks): int8 + bf16 scales, or bf16 matrices."""
    leaves = {s.index: init_leaf(s, key) for s in cfg.tensor_specs(quantization)}
    return params_from_leaves(cfg, leaves, quantization)
