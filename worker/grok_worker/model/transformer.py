"""The Grok-1 forward pass: one function for prefill and decode, plus thin conveniences.

Data flow of `forward_groups` (`forward` is its one-group case): each group of rows (tokens
[B, T], positions, its own cache) is flattened, and all groups' tokens form one activation h [N, D]
-> embedding·multiplier -> per layer (unrolled Python loop, each layer its own params):
h += norm1(attn(norm0(h))), h += norm3(moe(norm2(h))) -> final norm -> tied unembedding ·output
multiplier -> logits [N, V] float32, split back into [B, T, V] per group. Every weight is applied to
all N tokens at once (read once per pass); attention alone runs per group, over that group's cache.
Each call writes its tokens' K/V into the cache at their own positions before attending, so rows
may be at different lengths.

All functions are pure; `cfg` is static under jit (ModelConfig is a frozen, hashable dataclass).
`decode_step_jit` donates the cache so the decode step updates it in place.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import AbstractMesh, Mesh

from grok_worker.model.cache import KVCache, init_cache, insert
from grok_worker.model.layers import (
    QuantizedWeight,
    Weight,
    attend,
    attention_mask,
    linear,
    linear_f32,
    matmul,
    rms_norm,
    rope,
)
from grok_worker.model.moe import moe_partial
from grok_worker.model.parallel import Shards, local_scales
from grok_worker.model.params import Params
from grok_worker.model.sharding import group_specs, layout_of_mesh, param_specs, quantization_of
from grok_worker.model_config import PAD_ID, ModelConfig
from grok_worker.shard_plan import MESH_AXES

Array = jax.Array


class Rows(NamedTuple):
    """One group of token rows in a forward pass, with the KV cache those rows read and write.

    tokens, positions [B, T] int32; cache of batch B (row b of the tokens is row b of the cache);
    routes [L, B, T, k] int32 (tests) forces each layer's expert choices.
    """

    tokens: Array
    cache: KVCache
    positions: Array
    routes: Array | None = None


def _attention_block(
    cfg: ModelConfig,
    layer: dict[str, Weight],
    x: Array,
    positions: Array,
    groups: tuple[Rows, ...],
    index: int,
    caches: list[tuple[Array, Array]],
    masks: list[Array],
    shards: Shards,
) -> tuple[Array, list[tuple[Array, Array]]]:
    """x [N, D] (normed, every group's tokens in a row) -> ([N, D], each group's k/v caches
    [L, B, S, K, H] with layer `index` updated).

    The projections run once over all N tokens (each weight is read once per step); each group's
    queries attend over its own cache. Per device: its query heads (Kl·G of them) and the Kl KV
    heads they use. The new K/V are scattered into the whole-cache buffers (in place under
    donation) rather than into per-layer copies that would have to be stacked again.
    """
    n = x.shape[0]
    q = linear(x, layer["wq"]).reshape(1, n, -1, cfg.head_dim)  # [1, N, Kl·G, H]
    k = linear(x, layer["wk"]).reshape(1, n, -1, cfg.head_dim)  # [1, N, Kl, H]
    v = linear(x, layer["wv"]).reshape(1, n, -1, cfg.head_dim)  # [1, N, Kl, H]
    q = rope(q, positions[None], cfg.rope_base)[0]
    k = rope(k, positions[None], cfg.rope_base)[0]
    v = v[0]
    outs: list[Array] = []
    updated: list[tuple[Array, Array]] = []
    start = 0
    for group, (k_cache, v_cache), mask in zip(groups, caches, masks, strict=True):
        b, t = group.tokens.shape
        part = slice(start, start + b * t)
        start += b * t
        rows = jnp.broadcast_to(jnp.arange(b)[:, None], (b, t))
        kg = k[part].reshape(b, t, *k.shape[1:]).astype(k_cache.dtype)
        vg = v[part].reshape(b, t, *v.shape[1:]).astype(v_cache.dtype)
        k_cache = k_cache.at[index, rows, group.positions].set(kg, mode="drop")
        v_cache = v_cache.at[index, rows, group.positions].set(vg, mode="drop")
        qg = q[part].reshape(b, t, *q.shape[1:])
        out = attend(  # [B, T, Kl·G·H]
            qg, k_cache[index], v_cache[index], mask, cfg.attn_logit_multiplier, cfg.attn_soft_cap
        )
        outs.append(out.reshape(b * t, -1))
        updated.append((k_cache, v_cache))
    wo = local_scales(layer["wo"], cfg.q_size, shards.index("q_heads"))
    partial = linear_f32(_concat(outs), wo)  # [N, D] float32, summed over this device's heads only
    return shards.psum(partial, "q_heads").astype(jnp.bfloat16), updated


def _concat(parts: list[Array]) -> Array:
    """Concatenate along the first axis (a single part is passed through as it is)."""
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts)


def _moe_block(
    cfg: ModelConfig,
    layer: dict[str, Weight],
    x: Array,
    token_mask: Array,
    shards: Shards,
    forced: Array | None,
) -> Array:
    """x [N, D] (normed) -> [N, D]: this device's experts and FFN columns, summed over devices."""
    w_gate = layer["w_gate"]
    n_local = (w_gate.weight if isinstance(w_gate, QuantizedWeight) else w_gate).shape[0]
    w_down = local_scales(layer["w_down"], cfg.ffn_size, shards.index("ffn"))
    out = moe_partial(
        x,
        token_mask,
        layer["router"],  # type: ignore[arg-type]
        w_gate,
        layer["w_value"],
        w_down,
        cfg.experts_per_token,
        first=shards.index("expert") * n_local,
        forced=forced,
    )  # [N, D] float32
    return shards.psum(out, "expert", "ffn").astype(jnp.bfloat16)


def _embed(cfg: ModelConfig, table: Array, tokens: Array, shards: Shards) -> Array:
    """tokens [N] -> rows [N, D] bf16 · multiplier; a vocab-split table adds up its devices' rows."""
    v_local = table.shape[0]
    if v_local == cfg.vocab_size:
        rows = table[tokens]
    else:
        local = tokens - shards.index("vocab") * v_local
        here = (local >= 0) & (local < v_local)
        rows = jnp.where(here[..., None], table[jnp.clip(local, 0, v_local - 1)], 0)
        rows = shards.psum(rows, "vocab")  # exactly one device holds each row
    scaled: Array = rows.astype(jnp.bfloat16) * jnp.bfloat16(cfg.embedding_multiplier)  # [N, D]
    return scaled


def _forced_routes(cfg: ModelConfig, groups: tuple[Rows, ...]) -> Array | None:
    """Every group's forced routes as [L, N, k] (all groups force them, or none does)."""
    given = [g.routes for g in groups if g.routes is not None]
    if not given:
        return None
    if len(given) != len(groups):
        raise ValueError("forced routes must be given for every group of rows or for none")
    k = cfg.experts_per_token
    return jnp.concatenate([r.reshape(cfg.n_layers, -1, k) for r in given], axis=1)  # [L, N, k]


def _forward_body(
    params: Params, groups: tuple[Rows, ...], *, cfg: ModelConfig, shards: Shards
) -> tuple[tuple[Array, KVCache], ...]:
    """The forward pass on this device's slices (all of them without a mesh); see `forward_groups`."""
    tokens = _concat([g.tokens.reshape(-1) for g in groups])  # [N]
    positions = _concat([g.positions.reshape(-1) for g in groups])  # [N]
    token_mask = tokens != PAD_ID  # [N]
    valids: list[Array] = []
    masks: list[Array] = []
    for g in groups:
        b, t = g.tokens.shape
        rows = jnp.broadcast_to(jnp.arange(b)[:, None], (b, t))
        valid = g.cache.valid.at[rows, g.positions].set(g.tokens != PAD_ID, mode="drop")  # [B, S]
        valids.append(valid)
        masks.append(attention_mask(g.positions, valid))  # [B, 1, 1, T, S]
    routes = _forced_routes(cfg, groups)

    h = _embed(cfg, params.embed, tokens, shards)  # [N, D]
    caches = [(g.cache.k, g.cache.v) for g in groups]  # [L, B, S, Kl, H] each
    for i, layer in enumerate(params.layers):
        normed = rms_norm(h, layer["attn_norm"], cfg.norm_eps)  # type: ignore[arg-type]
        attn, caches = _attention_block(cfg, layer, normed, positions, groups, i, caches, masks, shards)
        h = h + rms_norm(attn, layer["attn_out_norm"], cfg.norm_eps)  # type: ignore[arg-type]
        normed = rms_norm(h, layer["moe_norm"], cfg.norm_eps)  # type: ignore[arg-type]
        expert_out = _moe_block(cfg, layer, normed, token_mask, shards, None if routes is None else routes[i])
        h = h + rms_norm(expert_out, layer["moe_out_norm"], cfg.norm_eps)  # type: ignore[arg-type]

    h = rms_norm(h, params.final_norm, cfg.norm_eps)
    # Written against embedᵀ [D, V]: XLA's CPU backend then fuses the bf16->f32 convert, the
    # transpose and the batch-1 matrix-vector product into one loop reading the table once
    # (measured 94 ms -> 2 ms for the small preset's 64 MB table); accelerators are indifferent.
    logits = matmul("nd,dv->nv", h, params.embed.T)  # [N, V_l] this device's vocabulary
    logits = logits * cfg.output_multiplier
    out: list[tuple[Array, KVCache]] = []
    start = 0
    for g, (k_all, v_all), valid in zip(groups, caches, valids, strict=True):
        b, t = g.tokens.shape
        group_logits = logits[start : start + b * t].reshape(b, t, -1)  # [B, T, V_l]
        start += b * t
        lengths = jnp.maximum(g.cache.lengths, jnp.max(g.positions, axis=1).astype(jnp.int32) + 1)
        out.append((group_logits, KVCache(k=k_all, v=v_all, valid=valid, lengths=lengths)))
    return tuple(out)


def forward(
    params: Params,
    cfg: ModelConfig,
    tokens: Array,
    cache: KVCache,
    positions: Array,
    routes: Array | None = None,
) -> tuple[Array, KVCache]:
    """Logits [B, T, V] float32 for tokens [B, T] int32 at positions [B, T] int32, and the new cache.

    Token id `PAD_ID` is padding: its K/V are written but masked out, its MoE output is 0.
    Positions must be below the cache's max_len (writes past it are dropped). `routes`
    [L, B, T, k] int32 (tests) forces each layer's expert choices. On a mesh (named by the
    weights' sharding) the body runs per device under shard_map; see `parallel`.
    """
    (result,) = forward_groups(params, cfg, (Rows(tokens, cache, positions, routes),))
    return result


def forward_groups(
    params: Params, cfg: ModelConfig, groups: tuple[Rows, ...]
) -> tuple[tuple[Array, KVCache], ...]:
    """One forward pass over several groups of rows, each with its own cache: (logits [B, T, V]
    float32, new cache) per group, as `forward` would give for each group alone.

    The groups' tokens go through every weight together (N = sum of B·T rows), so a step that
    carries decode rows and a prefill chunk reads the weights once; only attention (which has no
    weights) runs per group, over that group's cache.
    """
    mesh = mesh_of(params.embed)
    if mesh is None:
        return _forward_body(params, groups, cfg=cfg, shards=Shards())
    lay = layout_of_mesh(cfg, mesh)
    specs = [group_specs(cfg, lay, g.tokens.shape[0], g.cache.max_len, g.routes is not None) for g in groups]
    in_specs = (
        param_specs(cfg, quantization_of(params), lay),
        tuple(Rows(s.rows, s.cache, s.rows, s.routes) for s in specs),  # type: ignore[arg-type]
    )
    out_specs = tuple((s.logits, s.cache) for s in specs)
    body = functools.partial(_forward_body, cfg=cfg, shards=Shards(lay))
    # check_vma off: the MoE loop carries per-device values that the replication checker cannot type.
    run = jax.shard_map(body, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    result: tuple[tuple[Array, KVCache], ...] = run(params, groups)
    return result


def mesh_of(x: Array) -> Mesh | AbstractMesh | None:
    """The ("data", "expert", "model_kv", "model_q") mesh x is sharded over, if it spans devices."""
    sharding = x.sharding if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer) else None
    if sharding is None:
        sharding = getattr(jax.typeof(x), "sharding", None)
    mesh = getattr(sharding, "mesh", None)
    if not isinstance(mesh, Mesh | AbstractMesh) or tuple(mesh.axis_names) != MESH_AXES:
        return None
    return mesh if mesh.size > 1 else None


def prefill(params: Params, cfg: ModelConfig, tokens: Array, length: Array | int) -> tuple[Array, KVCache]:
    """Run a prompt padded to a bucket: tokens [1, T_bucket], the first `length` real.

    Returns logits [1, T_bucket, V] (the next-token logits are at index length-1) and a fresh
    cache of max_len T_bucket holding the prompt, ready for `insert`.
    """
    _, t = tokens.shape
    idx = jnp.arange(t, dtype=jnp.int32)[None, :]  # [1, T]
    tokens = jnp.where(idx < length, tokens, PAD_ID)
    logits, cache = forward(params, cfg, tokens, init_cache(cfg, 1, t), idx)
    return logits, cache._replace(lengths=jnp.full((1,), length, jnp.int32))


def decode_step(
    params: Params, cfg: ModelConfig, cache: KVCache, tokens: Array, positions: Array
) -> tuple[Array, KVCache]:
    """One token per row: tokens [B], positions [B] -> logits [B, V] float32 and the cache."""
    logits, cache = forward(params, cfg, tokens[:, None], cache, positions[:, None])
    return logits[:, 0], cache


#: Jitted entry points (cfg static). The decode step donates its cache: updated in place.
forward_jit = jax.jit(forward, static_argnums=1)
prefill_jit = jax.jit(prefill, static_argnums=1)
decode_step_jit = jax.jit(decode_step, static_argnums=1, donate_argnums=2)
insert_jit = jax.jit(insert, donate_argnums=0)
