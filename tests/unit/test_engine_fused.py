"""The fused step: decode rows and a prefill chunk in one forward pass give what the two steps
give apart (model level with `forward_groups`, and engine level with `ModelEngine`)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grok_worker.engine.api import SampledToken, SamplingParams
from grok_worker.engine.model_engine import ModelEngine
from grok_worker.model import PRESETS, Rows, forward, forward_groups, init_cache, init_params
from grok_worker.model.params import Params

CFG = PRESETS["tiny"]
#: Short prompts decoding in slots 0-2 (different sampling), a long prompt chunked into slot 3.
SHORT = [[1, 5, 6, 7], [1, 9, 9], [1, 300, 2, 4, 5]]
LONG = list(range(4, 41))  # 37 tokens: 5 chunks of 8


@functools.cache
def params() -> Params:
    return init_params(CFG, jax.random.key(0))


def test_forward_groups_gives_each_group_what_forward_gives_it_alone() -> None:
    rng = np.random.default_rng(0)
    decode = Rows(
        jnp.asarray(rng.integers(4, CFG.vocab_size, (3, 1)), jnp.int32),
        init_cache(CFG, 3, 16),
        jnp.asarray([[2], [5], [0]], jnp.int32),
    )
    chunk = Rows(
        jnp.asarray([[7, 8, 9, 10, 0, 0]], jnp.int32),  # the last two are padding
        init_cache(CFG, 1, 12),
        jnp.arange(4, 10, dtype=jnp.int32)[None],
    )
    together = jax.jit(forward_groups, static_argnums=1)(params(), CFG, (decode, chunk))
    for group, (logits, cache) in zip((decode, chunk), together, strict=True):
        alone_logits, alone_cache = jax.jit(forward, static_argnums=1)(
            params(), CFG, group.tokens, group.cache, group.positions
        )
        np.testing.assert_allclose(np.asarray(logits), np.asarray(alone_logits), rtol=1e-5, atol=1e-5)
        for got, want in zip(cache, alone_cache, strict=True):
            np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(want, np.float32), atol=1e-2)


def _serve(engine: ModelEngine, fused: bool) -> list[SampledToken]:
    """Three short prompts decoding while the long one is prefilled in chunks, then all four
    decoding; every sampled token in order."""
    out: list[SampledToken] = []
    for slot, prompt in enumerate(SHORT):
        sampling = SamplingParams(temperature=1.5 if slot == 0 else 0.0, top_k=20, seed=slot)
        prefix, first = engine.prefill(prompt, sampling)
        engine.insert(prefix, slot)
        out.append(first)
    long = engine.begin_prefill(LONG, SamplingParams(temperature=0.8, seed=7))
    first: SampledToken | None = None
    while first is None:
        if fused:
            outputs, first = engine.decode_with_chunk(long)
        else:
            first = engine.prefill_chunk(long)
            outputs = engine.decode()
        out.extend(outputs[: len(SHORT)])  # slot 3 is not decoding yet: its output is ignored
    out.append(first)
    engine.insert(long, len(SHORT))
    for _ in range(4):
        out.extend(engine.decode())
    return out


@pytest.fixture(scope="module")
def engine() -> ModelEngine:
    """One engine for every run (compiled once): each run inserts into all four slots afresh."""
    return ModelEngine(CFG, params(), 4, 64, (16, 48), prefill_chunk=8)


def test_a_fused_step_samples_the_tokens_the_chunk_and_the_decode_step_sample_apart(
    engine: ModelEngine,
) -> None:
    apart, fused = _serve(engine, fused=False), _serve(engine, fused=True)
    assert len(fused) == len(apart) == 3 + 5 * 3 + 1 + 4 * 4
    assert [t.token for t in fused] == [t.token for t in apart]
    np.testing.assert_allclose([t.logprob for t in fused], [t.logprob for t in apart], rtol=1e-5, atol=1e-5)
    # The chunked prompt continues as the same prompt prefilled whole (one bucket-48 prefill).
    prefix, first = engine.prefill(LONG, SamplingParams(temperature=0.8, seed=7))
    engine.insert(prefix, 3)
    whole = [first, *(engine.decode()[3] for _ in range(4))]
    chunked = [fused[3 + 5 * 3], *(fused[3 + 5 * 3 + 1 + 4 * i + 3] for i in range(4))]
    assert [t.token for t in chunked] == [t.token for t in whole]
