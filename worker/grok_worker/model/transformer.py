"""The Grok-1 forward pass: one function for prefill and decode, plus thin conveniences.

Data flow of `forward`: tokens [B, T] -> embedding·multiplier -> per layer (unrolled Python loop,
each layer its own params): h += norm1(attn(norm0(h))), h += norm3(moe(norm2(h))) -> final norm ->
tied unembedding ·output multiplier -> logits [B, T, V] float32. Each call writes its tokens' K/V
into the cache at their own positions before attending, so rows may be at different lengths.

All functions are pure; `cfg` is static under jit (ModelConfig is a frozen, hashable dataclass).
`decode_step_jit` donates the cache so the decode step updates it in place.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from grok_worker.model.cache import KVCache, init_cache, insert
from grok_worker.model.layers import Weight, attend, attention_mask, linear, matmul, rms_norm, rope
from grok_worker.model.moe import moe
from grok_worker.model.params import Params
from grok_worker.model_config import ModelConfig

Array = jax.Array


def _attention_block(
    cfg: ModelConfig,
    layer: dict[str, Weight],
    x: Array,
    positions: Array,
    index: int,
    k_cache: Array,
    v_cache: Array,
    mask: Array,
) -> tuple[Array, Array, Array]:
    """x [B, T, D] (normed) -> ([B, T, D], k/v caches [L, B, S, K, H] with layer `index` updated).

    The new K/V are scattered into the whole-cache buffers (in place under donation) rather
    than into per-layer copies that would have to be stacked again.
    """
    b, t, _ = x.shape
    q = linear(x, layer["wq"]).reshape(b, t, cfg.n_q_heads, cfg.head_dim)  # [B, T, K·G, H]
    k = linear(x, layer["wk"]).reshape(b, t, cfg.n_kv_heads, cfg.head_dim)  # [B, T, K, H]
    v = linear(x, layer["wv"]).reshape(b, t, cfg.n_kv_heads, cfg.head_dim)  # [B, T, K, H]
    q = rope(q, positions, cfg.rope_base)
    k = rope(k, positions, cfg.rope_base)
    rows = jnp.broadcast_to(jnp.arange(b)[:, None], (b, t))
    k_cache = k_cache.at[index, rows, positions].set(k.astype(k_cache.dtype), mode="drop")
    v_cache = v_cache.at[index, rows, positions].set(v.astype(v_cache.dtype), mode="drop")
    out = attend(  # [B, T, K·G·H]
        q, k_cache[index], v_cache[index], mask, cfg.attn_logit_multiplier, cfg.attn_soft_cap
    )
    return linear(out, layer["wo"]), k_cache, v_cache


def forward(
    params: Params, cfg: ModelConfig, tokens: Array, cache: KVCache, positions: Array
) -> tuple[Array, KVCache]:
    """Logits [B, T, V] float32 for tokens [B, T] int32 at positions [B, T] int32, and the new cache.

    Token id `cfg.pad_id` is padding: its K/V are written but masked out, its MoE output is 0.
    Positions must be below the cache's max_len (writes past it are dropped).
    """
    b, t = tokens.shape
    token_mask = tokens != cfg.pad_id  # [B, T]
    rows = jnp.broadcast_to(jnp.arange(b)[:, None], (b, t))
    valid = cache.valid.at[rows, positions].set(token_mask, mode="drop")  # [B, S]
    mask = attention_mask(positions, valid)  # [B, 1, 1, T, S]

    h = params.embed[tokens].astype(jnp.bfloat16) * jnp.bfloat16(cfg.embedding_multiplier)  # [B, T, D]
    k_all, v_all = cache.k, cache.v  # [L, B, S, K, H]
    for i, layer in enumerate(params.layers):
        normed = rms_norm(h, layer["attn_norm"], cfg.norm_eps)  # type: ignore[arg-type]
        attn, k_all, v_all = _attention_block(cfg, layer, normed, positions, i, k_all, v_all, mask)
        h = h + rms_norm(attn, layer["attn_out_norm"], cfg.norm_eps)  # type: ignore[arg-type]
        normed = rms_norm(h, layer["moe_norm"], cfg.norm_eps)  # type: ignore[arg-type]
        expert_out = moe(
            normed,
            token_mask,
            layer["router"],  # type: ignore[arg-type]
            layer["w_gate"],
            layer["w_value"],
            layer["w_down"],
            cfg.experts_per_token,
        )
        h = h + rms_norm(expert_out, layer["moe_out_norm"], cfg.norm_eps)  # type: ignore[arg-type]

    h = rms_norm(h, params.final_norm, cfg.norm_eps)
    # Written against embedᵀ [D, V]: XLA's CPU backend then fuses the bf16->f32 convert, the
    # transpose and the batch-1 matrix-vector product into one loop reading the table once
    # (measured 94 ms -> 2 ms for the small preset's 64 MB table); accelerators are indifferent.
    logits = matmul("btd,dv->btv", h, params.embed.T)
    logits = logits * cfg.output_multiplier  # [B, T, V]
    lengths = jnp.maximum(cache.lengths, jnp.max(positions, axis=1).astype(jnp.int32) + 1)
    return logits, KVCache(k=k_all, v=v_all, valid=valid, lengths=lengths)


def prefill(params: Params, cfg: ModelConfig, tokens: Array, length: Array | int) -> tuple[Array, KVCache]:
    """Run a prompt padded to a bucket: tokens [1, T_bucket], the first `length` real.

    Returns logits [1, T_bucket, V] (the next-token logits are at index length-1) and a fresh
    cache of max_len T_bucket holding the prompt, ready for `insert`.
    """
    _, t = tokens.shape
    idx = jnp.arange(t, dtype=jnp.int32)[None, :]  # [1, T]
    tokens = jnp.where(idx < length, tokens, cfg.pad_id)
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
