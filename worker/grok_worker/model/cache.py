"""The KV cache: an explicit pytree threaded through every forward call.

Layout (the one place it is written down):
- `k`, `v`: bfloat16 [layers, batch, max_len, kv_heads, head_dim]. Slot s of row b holds the key
  (after RoPE) and value of the token at absolute position s of that row: slot index == position.
- `valid`: bool [batch, max_len]. True where the slot holds a real token; padding tokens (id 0)
  are written but marked invalid, so attention never sees them. One mask shared by all layers.
- `lengths`: int32 [batch]. One past the highest position written per row (the next decode
  position); rows advance independently, which is what continuous batching needs.

A prefill cache (batch 1, max_len = prompt bucket) is copied into one row ("slot") of the decode
cache with `insert`, which also clears the rest of that row's `valid`, so a previous occupant's
stale entries are never attended to.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from grok_worker.model_config import ModelConfig

Array = jax.Array


class KVCache(NamedTuple):
    k: Array  # [L, B, S, K, H] bf16
    v: Array  # [L, B, S, K, H] bf16
    valid: Array  # [B, S] bool
    lengths: Array  # [B] int32

    @property
    def batch(self) -> int:
        return int(self.k.shape[1])

    @property
    def max_len(self) -> int:
        return int(self.k.shape[2])


def init_cache(cfg: ModelConfig, batch: int, max_len: int) -> KVCache:
    """An empty cache for `batch` rows of up to `max_len` positions each."""
    shape = (cfg.n_layers, batch, max_len, cfg.n_kv_heads, cfg.head_dim)
    return KVCache(
        k=jnp.zeros(shape, jnp.bfloat16),
        v=jnp.zeros(shape, jnp.bfloat16),
        valid=jnp.zeros((batch, max_len), jnp.bool_),
        lengths=jnp.zeros((batch,), jnp.int32),
    )


def insert(decode_cache: KVCache, prefill_cache: KVCache, slot: Array | int, length: Array | int) -> KVCache:
    """Copy row 0 of a prefill cache (its first `length` positions) into row `slot` of the decode cache.

    The prefill cache's max_len must not exceed the decode cache's; positions >= length (prompt
    padding) and every later slot of the row are marked invalid until decode writes them.
    """
    if prefill_cache.max_len > decode_cache.max_len:
        raise ValueError(
            f"prefill cache holds {prefill_cache.max_len} positions but the decode cache only "
            f"{decode_cache.max_len}; use a prefill bucket no longer than the decode max_len"
        )
    slot = jnp.asarray(slot, jnp.int32)
    length = jnp.asarray(length, jnp.int32)
    zero = jnp.int32(0)
    k = jax.lax.dynamic_update_slice(decode_cache.k, prefill_cache.k[:, :1], (zero, slot, zero, zero, zero))
    v = jax.lax.dynamic_update_slice(decode_cache.v, prefill_cache.v[:, :1], (zero, slot, zero, zero, zero))
    positions = jnp.arange(decode_cache.max_len)
    row = (
        jnp.zeros((decode_cache.max_len,), jnp.bool_).at[: prefill_cache.max_len].set(prefill_cache.valid[0])
    )
    row = row & (positions < length)
    valid = jax.lax.dynamic_update_slice(decode_cache.valid, row[None, :], (slot, zero))
    lengths = decode_cache.lengths.at[slot].set(length)
    return KVCache(k=k, v=v, valid=valid, lengths=lengths)
