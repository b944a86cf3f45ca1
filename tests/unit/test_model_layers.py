"""Each model piece against plain-numpy math written here, independently of the JAX code."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from grok_worker.model.layers import (
    QuantizedWeight,
    attend,
    attention_mask,
    dequantize,
    linear,
    rms_norm,
    rope,
)
from grok_worker.model.moe import expert_ffn, moe, route

RNG = np.random.default_rng(0)


def bf16(x: np.ndarray) -> np.ndarray:
    return x.astype(ml_dtypes.bfloat16).astype(np.float32)


def close(ours: jax.Array, ref: np.ndarray, rtol: float = 2e-2) -> None:
    a = np.asarray(ours, np.float32)
    np.testing.assert_allclose(a, ref, rtol=rtol, atol=rtol * np.abs(ref).max())


def test_rms_norm_scales_directly_without_one_plus() -> None:
    x = RNG.normal(size=(2, 3, 16)).astype(np.float32)
    scale = RNG.normal(size=16).astype(np.float32)
    ref = x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-5) * scale
    close(rms_norm(jnp.asarray(x), jnp.asarray(scale), 1e-5), ref, 1e-5)


def test_rope_rotates_half_split_pairs_over_the_whole_head() -> None:
    x = RNG.normal(size=(1, 5, 2, 8)).astype(np.float32)
    pos = np.array([[0, 1, 2, 7, 100]])
    ref = np.empty_like(x)
    for t in range(5):
        for i in range(4):  # pair (i, i+4) rotated by angle pos·base^(-2i/8)
            theta = pos[0, t] * 10000.0 ** (-2 * i / 8)
            a, b = x[0, t, :, i], x[0, t, :, i + 4]
            ref[0, t, :, i] = a * math.cos(theta) - b * math.sin(theta)
            ref[0, t, :, i + 4] = b * math.cos(theta) + a * math.sin(theta)
    close(rope(jnp.asarray(x), jnp.asarray(pos), 10000.0), ref, 1e-5)


def test_dequantize_uses_scale_row_g_for_input_row_block_g() -> None:
    q = RNG.integers(-127, 128, size=(16, 3)).astype(np.int8)
    s = bf16(RNG.uniform(0.5, 2, size=(4, 3)))
    ref = np.stack([q[r].astype(np.float32) * s[r // 4] for r in range(16)])
    w = QuantizedWeight(jnp.asarray(q), jnp.asarray(s, jnp.bfloat16))
    close(dequantize(w), ref, 1e-2)


def test_int8_linear_matches_dequantised_matmul() -> None:
    x = bf16(RNG.normal(size=(2, 5, 16)))
    q = RNG.integers(-127, 128, size=(16, 6)).astype(np.int8)
    s = bf16(RNG.uniform(0.01, 0.02, size=(8, 6)))
    w = np.repeat(s, 2, axis=0) * q
    out = linear(jnp.asarray(x, jnp.bfloat16), QuantizedWeight(jnp.asarray(q), jnp.asarray(s, jnp.bfloat16)))
    assert out.dtype == jnp.bfloat16
    close(out, x @ w)
    close(linear(jnp.asarray(x, jnp.bfloat16), jnp.asarray(w, jnp.bfloat16)), x @ w)


def numpy_attention(q, k, v, mask, mult, cap):  # type: ignore[no-untyped-def]
    """q [B,T,Hq,D], k/v [B,S,Hkv,D], mask [B,T,S] -> [B,T,Hq·D]."""
    b, t, hq, d = q.shape
    group = hq // k.shape[2]
    out = np.zeros((b, t, hq, d), np.float32)
    for h in range(hq):
        kh, vh = k[:, :, h // group], v[:, :, h // group]
        logits = np.einsum("btd,bsd->bts", q[:, :, h], kh) * mult
        logits = cap * np.tanh(logits / cap)
        logits = np.where(mask, logits, -1e30)
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        out[:, :, h] = np.einsum("bts,bsd->btd", p, vh)
    return out.reshape(b, t, hq * d)


def test_attention_soft_caps_groups_heads_and_masks_causally_and_padding() -> None:
    b, t, hq, hkv, d = 2, 6, 4, 2, 8
    q = bf16(RNG.normal(size=(b, t, hq, d)) * 6)  # large logits so the cap of 30 matters
    k = bf16(RNG.normal(size=(b, t, hkv, d)) * 6)
    v = bf16(RNG.normal(size=(b, t, hkv, d)))
    pos = np.broadcast_to(np.arange(t), (b, t))
    valid = np.ones((b, t), bool)
    valid[1, 2] = False  # a padding token in row 1
    mask = (np.arange(t)[None, None, :] <= pos[:, :, None]) & valid[:, None, :]
    ref = numpy_attention(q, k, v, mask, 0.5, 30.0)
    m = attention_mask(jnp.asarray(pos), jnp.asarray(valid))
    ours = attend(*(jnp.asarray(a, jnp.bfloat16) for a in (q, k, v)), m, 0.5, 30.0)
    close(ours, ref)
    uncapped = numpy_attention(q, k, v, mask, 0.5, 1e9)
    assert np.abs(uncapped - ref).max() > 0.05, "test inputs must make the soft cap matter"


def test_router_takes_top2_of_float32_softmax_without_renormalising() -> None:
    x = bf16(RNG.normal(size=(5, 16)))
    w = RNG.normal(size=(16, 8)).astype(np.float32)
    logits = x @ w
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    mask = np.array([True, True, False, True, True])
    gates, experts = route(jnp.asarray(x, jnp.bfloat16), jnp.asarray(w), jnp.asarray(mask), 2)
    top = np.argsort(-p, -1)[:, :2]
    np.testing.assert_array_equal(np.asarray(experts)[mask], top[mask])
    np.testing.assert_allclose(np.asarray(gates)[mask], np.take_along_axis(p, top, -1)[mask], rtol=1e-5)
    assert np.all(np.asarray(gates)[2] == 0), "padding tokens get zero gates"
    assert np.all(np.asarray(gates)[mask].sum(-1) < 1), "gates are raw probabilities, not renormalised"


def gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def test_expert_ffn_is_gated_gelu_with_tanh_approximation() -> None:
    x = bf16(RNG.normal(size=(3, 16)))
    wg, wv = bf16(RNG.normal(size=(16, 24)) / 4), bf16(RNG.normal(size=(16, 24)) / 4)
    wd = bf16(RNG.normal(size=(24, 16)) / 5)
    ref = (gelu_tanh(x @ wg) * (x @ wv)) @ wd
    ours = expert_ffn(*(jnp.asarray(a, jnp.bfloat16) for a in (x, wg, wv, wd)))
    close(ours, ref, 3e-2)
    silu = ((x @ wg) / (1 + np.exp(-(x @ wg))) * (x @ wv)) @ wd
    assert np.abs(silu - ref).max() > 0.05


def test_moe_sums_the_two_selected_experts_weighted_by_raw_gates_for_any_token_count() -> None:
    e, d, f = 8, 16, 24
    wg, wv = bf16(RNG.normal(size=(e, d, f)) / 4), bf16(RNG.normal(size=(e, d, f)) / 4)
    wd = bf16(RNG.normal(size=(e, f, d)) / 5)
    router = RNG.normal(size=(d, e)).astype(np.float32)
    for n in (1, 3, 40, 300):  # decode sizes and a prefill larger than one block
        x = bf16(RNG.normal(size=(n, d)))
        mask = np.ones(n, bool)
        mask[0] = n == 1  # padding gives zero output (kept for the single-token case)
        logits = x @ router
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        ref = np.zeros((n, d), np.float32)
        for i in range(n):
            if not mask[i]:
                continue
            for ex in np.argsort(-p[i])[:2]:
                ref[i] += p[i, ex] * ((gelu_tanh(x[i] @ wg[ex]) * (x[i] @ wv[ex])) @ wd[ex])
        args = (jnp.asarray(a, jnp.bfloat16) for a in (wg, wv, wd))
        ours = jax.jit(moe, static_argnames="k")(
            jnp.asarray(x, jnp.bfloat16), jnp.asarray(mask), jnp.asarray(router), *args, k=2
        )
        close(ours, ref, 3e-2)
