"""The dense building blocks of Grok-1: RMSNorm, RoPE, (int8) linear layers and attention.

Every function is pure and shape-polymorphic; dtypes follow the release: activations bfloat16,
norms / RoPE / attention logits and softmax in float32 (GROK1.md). Einsum letters used throughout:
B batch, T new tokens, S cache slots, K kv heads, G query heads per kv head, H head dim,
D d_model, N output features.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

#: Masked attention logits get this value (after the soft cap), as the release does.
MASK_VALUE = -1e30


class QuantizedWeight(NamedTuple):
    """An int8 weight [..., In, Out] with bf16 scales [..., G, Out] grouped along the input axis.

    Row block g (In/G rows) of the weight uses scale row g; there is no zero point.
    """

    weight: Array
    scales: Array


Weight = Array | QuantizedWeight


def matmul(spec: str, a: Array, b: Array) -> Array:
    """einsum accumulated in float32, result float32; `b` (weights, cache) keeps its storage dtype.

    `b` may be bf16 or int8: XLA reads it as stored and widens inside the dot, so an int8 weight
    is streamed as 1 byte per element (no materialised bf16/f32 copy; measured 2-4x faster on CPU
    than converting first). XLA's CPU backend has no bf16 x bf16 -> f32 dot, so there `a` (the
    small activation) is widened to float32; accelerators take bf16 activations directly.
    """
    if jax.default_backend() == "cpu":
        return jnp.einsum(spec, a.astype(jnp.float32), b, preferred_element_type=jnp.float32)
    if b.dtype != jnp.bfloat16:
        b = b.astype(jnp.bfloat16)
    return jnp.einsum(spec, a.astype(jnp.bfloat16), b, preferred_element_type=jnp.float32)


def dequantize(w: QuantizedWeight) -> Array:
    """The bf16 matrix an int8 weight stands for (used by tests and bf16 conversion only)."""
    *lead, k, n = w.weight.shape
    g = w.scales.shape[-2]
    blocks = w.weight.astype(jnp.bfloat16).reshape(*lead, g, k // g, n)  # [..., G, In/G, N]
    return (blocks * w.scales[..., :, None, :]).reshape(*lead, k, n)


def linear(x: Array, w: Weight) -> Array:
    """x[..., In] @ w[In, Out] -> [..., Out] in bf16, accumulating in float32 (see `linear_f32`)."""
    return linear_f32(x, w).astype(jnp.bfloat16)


def linear_f32(x: Array, w: Weight) -> Array:
    """x[..., In] @ w[In, Out] -> [..., Out] float32 (a partial sum when In is sharded).

    An int8 weight is never expanded in memory: x is split into the G input groups, each group is
    multiplied by its int8 rows (widened inside the dot, exactly, since |q| <= 127), and the
    per-group partial sums are scaled and added: x @ (q * s) = sum_g (x_g @ q_g) * s_g.
    """
    if not isinstance(w, QuantizedWeight):
        return matmul("...i,io->...o", x, w)
    k = w.weight.shape[0]
    g = w.scales.shape[0]
    if g == 1:
        return matmul("...i,io->...o", x, w.weight) * w.scales[0].astype(jnp.float32)
    # One plain dot per scale group (a batched dot over G was measured several times slower).
    rows = k // g
    out = None
    for i in range(g):
        part = matmul("...i,io->...o", x[..., i * rows : (i + 1) * rows], w.weight[i * rows : (i + 1) * rows])
        part = part * w.scales[i].astype(jnp.float32)  # [..., N]
        out = part if out is None else out + part
    assert out is not None
    return out


def rms_norm(x: Array, scale: Array, eps: float) -> Array:
    """x·rsqrt(mean(x²)+eps)·scale in float32 (scale applied directly, no 1+scale), back to x's dtype."""
    xf = x.astype(jnp.float32)
    mean_sq = jnp.mean(jnp.square(xf), axis=-1, keepdims=True)
    return (xf * jax.lax.rsqrt(mean_sq + eps) * scale.astype(jnp.float32)).astype(x.dtype)


def rope(x: Array, positions: Array, base: float) -> Array:
    """Rotary embedding over the whole head, half-split (rotate_half) style, math in float32.

    x: [B, T, heads, H]; positions: [B, T] absolute positions of the tokens.
    """
    h = x.shape[-1]
    inv_freq = 1.0 / (base ** (jnp.arange(0, h, 2, dtype=jnp.float32) / h))  # [H/2]
    phase = positions.astype(jnp.float32)[..., None] * inv_freq  # [B, T, H/2]
    phase = jnp.concatenate([phase, phase], axis=-1)[:, :, None, :]  # [B, T, 1, H]
    xf = x.astype(jnp.float32)
    x1, x2 = jnp.split(xf, 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return (xf * jnp.cos(phase) + rotated * jnp.sin(phase)).astype(x.dtype)


def attention_mask(positions: Array, valid: Array) -> Array:
    """[B, 1, 1, T, S]: slot s is visible to the query at positions[b, t] if s <= that position
    (causal; cache slot index == absolute position) and slot s holds a real token (not padding)."""
    slots = jnp.arange(valid.shape[1])
    causal = slots[None, None, :] <= positions[:, :, None]  # [B, T, S]
    return (causal & valid[:, None, :])[:, None, None, :, :]


def attend(
    q: Array,
    k_cache: Array,
    v_cache: Array,
    mask: Array,
    logit_multiplier: float,
    soft_cap: float,
) -> Array:
    """Grouped-query attention of new queries over the whole cache.

    q: [B, T, K·G, H]; k_cache, v_cache: [B, S, K, H]; mask: [B, 1, 1, T, S] -> [B, T, K·G·H].
    Query head j uses kv head j // G, as the release groups them.
    """
    b, t, n_q, h = q.shape
    n_kv = k_cache.shape[2]
    qg = q.reshape(b, t, n_kv, n_q // n_kv, h)  # [B, T, K, G, H]
    logits = matmul("btkgh,bskh->bkgts", qg, k_cache)
    logits = logits * logit_multiplier
    logits = soft_cap * jnp.tanh(logits / soft_cap)  # [B, K, G, T, S], float32
    logits = jnp.where(mask, logits, MASK_VALUE)
    weights = jax.nn.softmax(logits, axis=-1).astype(v_cache.dtype)
    out = matmul("bkgts,bskh->btkgh", weights, v_cache)
    return out.astype(jnp.bfloat16).reshape(b, t, n_q * h)  # [B, T, K·G·H]
