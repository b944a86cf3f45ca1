"""Sampling against plain-numpy expectations: greedy, top-k, top-p, temperature, seeds."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from grok_worker.engine.sampling import sample, seed_words

_sample = jax.jit(sample)
#: Every call is padded to this batch so the sampler compiles once per vocabulary size.
BATCH = 1024


def run(
    logits: np.ndarray,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seeds: np.ndarray | None = None,
    positions: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    b = logits.shape[0]
    seeds = np.zeros((b, 2), np.uint32) if seeds is None else seeds
    positions = np.zeros((b,), np.int32) if positions is None else positions
    pad = BATCH - b  # filler rows: other requests sharing the batch
    tokens, logprobs = _sample(
        np.concatenate([logits, np.zeros((pad, logits.shape[1]))]).astype(np.float32),
        np.full((BATCH,), temperature, np.float32),
        np.full((BATCH,), top_p, np.float32),
        np.full((BATCH,), top_k, np.int32),
        np.concatenate([seeds, np.full((pad, 2), 99, np.uint32)]),
        np.concatenate([positions, np.zeros((pad,), np.int32)]),
    )
    return np.asarray(tokens)[:b], np.asarray(logprobs)[:b]


def many_seeds(n: int) -> np.ndarray:
    return np.stack([np.arange(n, dtype=np.uint32), np.zeros(n, np.uint32)], axis=1)


LOGITS = np.log(np.array([0.05, 0.4, 0.3, 0.15, 0.1], np.float32))


def test_temperature_zero_is_argmax_with_the_log_softmax_logprob() -> None:
    logits = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    tokens, logprobs = run(logits)
    np.testing.assert_array_equal(tokens, logits.argmax(-1))
    expected = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    np.testing.assert_allclose(logprobs, expected[np.arange(3), tokens], rtol=1e-5)


def test_sampling_frequencies_follow_the_tempered_distribution() -> None:
    n = BATCH
    tokens, _ = run(np.tile(LOGITS, (n, 1)), temperature=1.0, seeds=many_seeds(n))
    freq = np.bincount(tokens, minlength=5) / n
    np.testing.assert_allclose(freq, np.exp(LOGITS), atol=0.05)
    hot, _ = run(np.tile(LOGITS, (n, 1)), temperature=3.0, seeds=many_seeds(n))
    assert np.bincount(hot, minlength=5)[0] / n > 0.1  # flatter at higher temperature


def test_top_k_keeps_only_the_k_most_likely() -> None:
    n = BATCH
    tokens, _ = run(np.tile(LOGITS, (n, 1)), temperature=2.0, top_k=2, seeds=many_seeds(n))
    assert set(np.unique(tokens)) == {1, 2}
    greedy_like, _ = run(np.tile(LOGITS, (50, 1)), temperature=5.0, top_k=1, seeds=many_seeds(50))
    assert set(greedy_like) == {1}


@pytest.mark.parametrize(("top_p", "allowed"), [(0.3, {1}), (0.5, {1, 2}), (0.7, {1, 2}), (0.71, {1, 2, 3})])
def test_top_p_keeps_the_smallest_prefix_reaching_the_mass(top_p: float, allowed: set[int]) -> None:
    n = BATCH
    tokens, _ = run(np.tile(LOGITS, (n, 1)), temperature=1.0, top_p=top_p, seeds=many_seeds(n))
    assert set(np.unique(tokens)) == allowed


def test_same_seed_and_position_give_the_same_token_whatever_the_batch() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(6, 5)).astype(np.float32)
    seeds = np.array([[7, 0]] * 6, np.uint32)
    positions = np.array([3, 3, 4, 4, 5, 5], np.int32)
    tokens, _ = run(np.repeat(logits[:1], 6, 0), temperature=1.0, seeds=seeds, positions=positions)
    assert tokens[0] == tokens[1]
    assert tokens[2] == tokens[3]
    alone, _ = run(logits[:1], temperature=1.0, seeds=seeds[:1], positions=positions[:1])
    assert alone[0] == tokens[0]
    draws = {
        int(run(logits[:1], temperature=1.0, seeds=np.array([[s, 0]], np.uint32))[0][0]) for s in range(40)
    }
    assert len(draws) >= 3


def test_seed_words_split_64_bits() -> None:
    assert seed_words(0x1234_5678_9ABC_DEF0) == (0x9ABC_DEF0, 0x1234_5678)
    assert seed_words(-1) == (0xFFFF_FFFF, 0xFFFF_FFFF)
