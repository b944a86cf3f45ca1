"""The tiny model end to end: prefill + decode equals one full pass, padding, slots, greedy."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grok_worker.model import (
    PRESETS,
    decode_step_jit,
    forward_jit,
    init_cache,
    init_params,
    insert_jit,
    prefill_jit,
)
from grok_worker.model.params import Params

CFG = PRESETS["tiny"]


@functools.cache
def params() -> Params:
    return init_params(CFG, jax.random.key(0))


#: Every test uses these shapes, so each jitted function compiles once for the whole module.
FULL, BUCKET, MAX_LEN = 16, 8, 16


def full_logits(tokens: np.ndarray, p: Params | None = None) -> np.ndarray:
    """One full forward over [1, t] tokens (right-padded to FULL; padding cannot affect them)."""
    t = tokens.shape[1]
    padded = np.zeros((1, FULL), np.int32)
    padded[:, :t] = tokens
    pos = jnp.arange(FULL)[None]
    logits, _ = forward_jit(p or params(), CFG, jnp.asarray(padded), init_cache(CFG, 1, FULL), pos)
    return np.asarray(logits)[:, :t]


def close_bf16(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a, b, atol=0.03 * np.abs(b).max(), rtol=0.03)


@pytest.mark.slow
def test_prefill_then_decode_in_a_shared_batch_equals_one_full_forward() -> None:
    rng = np.random.default_rng(1)
    seqs = [rng.integers(4, CFG.vocab_size, size=n).astype(np.int32) for n in (12, 7)]
    prompt_lens, bucket, max_len = (5, 3), BUCKET, MAX_LEN
    cache = init_cache(CFG, 2, max_len)
    for slot, (seq, n) in enumerate(zip(seqs, prompt_lens, strict=True)):
        padded = np.zeros((1, bucket), np.int32)
        padded[0, :n] = seq[:n]
        logits, pcache = prefill_jit(params(), CFG, jnp.asarray(padded), n)
        close_bf16(np.asarray(logits)[0, :n], full_logits(seq[None])[0, :n])
        cache = insert_jit(cache, pcache, slot, n)
    # Both rows decode together, each at its own position (continuous batching).
    got: list[list[np.ndarray]] = [[], []]
    steps = 6
    for step in range(steps):
        pos = np.array([prompt_lens[r] + step for r in range(2)], np.int32)
        toks = np.array([seqs[r][pos[r]] if pos[r] < len(seqs[r]) else 0 for r in range(2)], np.int32)
        logits, cache = decode_step_jit(params(), CFG, cache, jnp.asarray(toks), jnp.asarray(pos))
        for r in range(2):
            if pos[r] < len(seqs[r]):
                got[r].append(np.asarray(logits)[r])
    assert np.asarray(cache.lengths).tolist() == [prompt_lens[0] + steps, prompt_lens[1] + steps]
    for r, seq in enumerate(seqs):
        ref = full_logits(seq[None])[0, prompt_lens[r] : prompt_lens[r] + len(got[r])]
        close_bf16(np.stack(got[r]), ref)


def test_padding_tokens_do_not_change_real_tokens_logits() -> None:
    rng = np.random.default_rng(2)
    seq = rng.integers(4, CFG.vocab_size, size=6).astype(np.int32)
    ref = full_logits(seq[None])[0]
    # Left padding at positions 0..2, then the real tokens at 3..8: padding keys are masked, and
    # RoPE is relative, so shifting all real positions by 3 leaves their logits unchanged.
    left_padded = np.zeros((1, FULL), np.int32)
    left_padded[0, 3:9] = seq
    logits, _ = forward_jit(
        params(), CFG, jnp.asarray(left_padded), init_cache(CFG, 1, FULL), jnp.arange(FULL)[None]
    )
    close_bf16(np.asarray(logits)[0, 3:9], ref)


def test_inserting_into_a_reused_slot_forgets_the_previous_occupant() -> None:
    rng = np.random.default_rng(3)
    old = rng.integers(4, CFG.vocab_size, size=(1, 8)).astype(np.int32)
    new = rng.integers(4, CFG.vocab_size, size=(1, 4)).astype(np.int32)
    cache = init_cache(CFG, 1, MAX_LEN)
    _, pc = prefill_jit(params(), CFG, jnp.asarray(old), 8)
    cache = insert_jit(cache, pc, 0, 8)
    new_padded = np.zeros((1, BUCKET), np.int32)
    new_padded[:, :4] = new
    _, pc = prefill_jit(params(), CFG, jnp.asarray(new_padded), 4)
    cache = insert_jit(cache, pc, 0, 4)
    nxt = np.array([7], np.int32)
    logits, _ = decode_step_jit(params(), CFG, cache, jnp.asarray(nxt), jnp.asarray([4], jnp.int32))
    close_bf16(np.asarray(logits)[0], full_logits(np.concatenate([new, nxt[None]], 1))[0, -1])


def greedy(prompt: list[int], n: int) -> list[int]:
    cache = init_cache(CFG, 1, MAX_LEN)
    padded = np.zeros((1, BUCKET), np.int32)
    padded[0, : len(prompt)] = prompt
    logits, pc = prefill_jit(params(), CFG, jnp.asarray(padded), len(prompt))
    cache = insert_jit(cache, pc, 0, len(prompt))
    out = [int(np.argmax(np.asarray(logits)[0, len(prompt) - 1]))]
    for i in range(n - 1):
        pos = jnp.asarray([len(prompt) + i], jnp.int32)
        logits, cache = decode_step_jit(params(), CFG, cache, jnp.asarray([out[-1]], jnp.int32), pos)
        out.append(int(np.argmax(np.asarray(logits)[0])))
    return out


def test_greedy_generation_is_deterministic_and_not_constant() -> None:
    a = greedy([1, 50, 60, 70], 10)
    assert a == greedy([1, 50, 60, 70], 10)
    assert a != greedy([1, 51, 61, 71], 10), "the output must depend on the prompt"
    assert all(0 <= t < CFG.vocab_size for t in a)


def test_bf16_weights_give_the_same_logits_as_their_int8_dequantisation() -> None:
    from grok_worker.model import QuantizedWeight, dequantize

    p = params()
    layers = tuple(
        {k: dequantize(v) if isinstance(v, QuantizedWeight) else v for k, v in layer.items()}
        for layer in p.layers
    )
    tokens = np.array([[1, 9, 33, 100, 7]], np.int32)
    close_bf16(full_logits(tokens, p._replace(layers=layers)), full_logits(tokens))
