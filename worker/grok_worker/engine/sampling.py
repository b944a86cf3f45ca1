"""Per-slot token sampling inside the jitted step: greedy, temperature, top-k, top-p, seeded.

Data flow: logits [B, V] from a prefill or decode step, plus per-slot parameters as arrays
(temperature [B], top_p [B], top_k [B], seeds [B, 2] uint32, positions [B]) -> sampled tokens [B]
and their log-probabilities [B]. Every slot gets its own random key derived from its request's seed
and the position being sampled, so a request draws the same tokens whatever else is in the batch
(and on every host of a multi-host group). Pure JAX, no host round trip.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from grok_worker.engine.api import SamplingParams

_NEG_INF = -1e30


def seed_words(seed: int) -> tuple[int, int]:
    """Split a 64-bit seed into two uint32 words (JAX keys take 32-bit seeds without x64)."""
    seed &= (1 << 64) - 1
    return seed & 0xFFFFFFFF, seed >> 32


def slot_key(seed: jax.Array, position: jax.Array) -> jax.Array:
    """Key for one slot: seed [2] uint32 and position [] int32 -> a typed PRNG key."""
    key = jax.random.fold_in(jax.random.key(seed[0]), seed[1])
    return jax.random.fold_in(key, position)


def sample(
    logits: jax.Array,
    temperature: jax.Array,
    top_p: jax.Array,
    top_k: jax.Array,
    seeds: jax.Array,
    positions: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Sample one token per row.

    logits [B, V] (any float dtype), temperature/top_p [B] float32, top_k [B] int32 (0 = off),
    seeds [B, 2] uint32, positions [B] int32 -> (tokens [B] int32, logprobs [B] float32).
    """
    logits = logits.astype(jnp.float32)
    vocab = logits.shape[-1]
    logprobs_all = jax.nn.log_softmax(logits, axis=-1)  # (B, V)
    greedy = jnp.argmax(logits, axis=-1).astype(jnp.int32)  # (B,)

    safe_t = jnp.where(temperature > 0, temperature, 1.0)
    scaled = logits / safe_t[:, None]  # (B, V)
    sorted_desc = -jnp.sort(-scaled, axis=-1)  # (B, V), largest first
    # top-k: keep logits >= the k-th largest (k = V when top_k is 0 or too big).
    k = jnp.where((top_k > 0) & (top_k < vocab), top_k, vocab)
    kth = jnp.take_along_axis(sorted_desc, (k - 1)[:, None], axis=-1)  # (B, 1)
    # top-p: keep the smallest prefix of the sorted distribution whose mass reaches top_p
    # (the most likely token always stays).
    sorted_masked = jnp.where(sorted_desc >= kth, sorted_desc, _NEG_INF)
    probs_sorted = jax.nn.softmax(sorted_masked, axis=-1)  # (B, V)
    mass_before = jnp.cumsum(probs_sorted, axis=-1) - probs_sorted  # (B, V)
    keep_sorted = mass_before < top_p[:, None]
    n_keep = jnp.maximum(jnp.sum(keep_sorted, axis=-1), 1)  # (B,)
    pth = jnp.take_along_axis(sorted_masked, (n_keep - 1)[:, None], axis=-1)  # (B, 1)
    threshold = jnp.maximum(kth, pth)
    masked = jnp.where(scaled >= threshold, scaled, _NEG_INF)  # (B, V)

    keys = jax.vmap(slot_key)(seeds, positions)
    drawn = jax.vmap(lambda key, row: jax.random.categorical(key, row))(keys, masked).astype(jnp.int32)
    tokens = jnp.where(temperature > 0, drawn, greedy)
    logprobs = jnp.take_along_axis(logprobs_all, tokens[:, None], axis=-1)[:, 0]
    return tokens, logprobs


class SlotSampling:
    """Host-side per-slot sampling parameters, packed into the arrays `sample` takes."""

    def __init__(self, max_batch: int) -> None:
        self.temperature = np.zeros((max_batch,), np.float32)
        self.top_p = np.ones((max_batch,), np.float32)
        self.top_k = np.zeros((max_batch,), np.int32)
        self.seeds = np.zeros((max_batch, 2), np.uint32)

    def set(self, slot: int, params: SamplingParams) -> None:
        self.temperature[slot] = params.temperature
        self.top_p[slot] = params.top_p
        self.top_k[slot] = params.top_k
        self.seeds[slot] = seed_words(params.seed)

    @staticmethod
    def single(params: SamplingParams) -> SlotSampling:
        one = SlotSampling(1)
        one.set(0, params)
        return one

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        # Copies: JAX may alias host numpy memory, and these arrays change between steps.
        return self.temperature.copy(), self.top_p.copy(), self.top_k.copy(), self.seeds.copy()
