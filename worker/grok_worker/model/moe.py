"""Grok-1's mixture of experts: float32 router, top-2 un-renormalised gates, gated-GELU experts.

Only the selected experts' work is computed (the release computes all eight and discards six).

Strategy (one code path for decode and prefill): the N·k (token, expert) assignments are sorted
by expert and laid out in blocks of `block` rows, each expert's rows padded to whole blocks, so
every block belongs to exactly one expert. A `lax.fori_loop` with a dynamic trip count walks the
used blocks only; each block slices its expert's weights (int8 stays int8) and runs the expert FFN
on its rows, so an expert that no token chose is never read.

- Decode (N small): block = N, so each chosen expert is one block and its weights are read once;
  batch-1 decode reads exactly 2 of 8 experts' weights, the memory-bandwidth optimum.
- Prefill (N large): block = `MAX_BLOCK` rows, so rows computed are at most N·k + E·block
  instead of the release's N·E, with matmuls big enough to be compute-efficient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from grok_worker.model.layers import Weight, linear

Array = jax.Array

#: Largest number of rows per expert block (prefill); decode uses block = number of tokens.
MAX_BLOCK = 128


def route(x: Array, router: Array, token_mask: Array, k: int) -> tuple[Array, Array]:
    """Softmax router in float32 over all experts, then top-k.

    x: [N, D]; router: [D, E]; token_mask: [N] (False for padding, whose gates become 0).
    Returns gates [N, k] float32 (raw probabilities, NOT renormalised) and expert ids [N, k].
    """
    logits = jnp.dot(x.astype(jnp.float32), router.astype(jnp.float32))  # [N, E]
    probs = jax.nn.softmax(logits, axis=-1) * token_mask[:, None].astype(jnp.float32)
    gates, experts = jax.lax.top_k(probs, k)
    return gates, experts.astype(jnp.int32)


def expert_ffn(x: Array, w_gate: Weight, w_value: Weight, w_down: Weight) -> Array:
    """down(gelu_tanh(x·W_gate) * (x·W_value)) for one expert: [R, D] -> [R, D] bf16."""
    hidden = jax.nn.gelu(linear(x, w_gate), approximate=True) * linear(x, w_value)  # [R, F]
    return linear(hidden, w_down)


def _take_expert(w: Weight, e: Array) -> Weight:
    """Expert e's slice of a stacked [E, ...] weight (int8 and scales sliced alike, no copy of others)."""
    sliced: Weight = jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, e, axis=0, keepdims=False), w)
    return sliced


def moe(
    x: Array,
    token_mask: Array,
    router: Array,
    w_gate: Weight,
    w_value: Weight,
    w_down: Weight,
    k: int,
) -> Array:
    """The MoE block on x [..., D] (any leading shape); padding tokens (token_mask False) give 0."""
    lead, d = x.shape[:-1], x.shape[-1]
    flat = x.reshape(-1, d)  # [N, D]
    n = flat.shape[0]
    n_experts = router.shape[-1]
    gates, experts = route(flat, router, token_mask.reshape(-1), k)  # [N, k] each

    block = min(n, MAX_BLOCK)
    n_assign = n * k
    # Sum over experts of ceil(count/block) < n_assign/block + E, so this many blocks always suffice.
    n_blocks = n_assign // block + n_experts

    flat_expert = experts.reshape(-1)  # [N·k]
    flat_token = jnp.repeat(jnp.arange(n, dtype=jnp.int32), k)  # [N·k]
    flat_gate = gates.reshape(-1)  # [N·k]
    order = jnp.argsort(flat_expert, stable=True)
    sorted_expert = flat_expert[order]
    counts = jnp.zeros(n_experts, jnp.int32).at[flat_expert].add(1)  # [E]
    padded = (counts + block - 1) // block * block  # [E] rows per expert, whole blocks
    padded_end = jnp.cumsum(padded)
    padded_start = padded_end - padded
    start = jnp.cumsum(counts) - counts
    rank = jnp.arange(n_assign, dtype=jnp.int32) - start[sorted_expert]
    dest = padded_start[sorted_expert] + rank  # [N·k] row of each sorted assignment

    n_rows = n_blocks * block
    # Row -> source token; unused rows point at an all-zero sentinel row N.
    row_token = jnp.full(n_rows, n, jnp.int32).at[dest].set(flat_token[order])
    x_rows = jnp.concatenate([flat, jnp.zeros((1, d), flat.dtype)])[row_token]  # [R, D]
    x_blocks = x_rows.reshape(n_blocks, block, d)  # [nb, b, D]
    block_start = jnp.arange(n_blocks, dtype=jnp.int32) * block
    block_expert = jnp.minimum(jnp.searchsorted(padded_end, block_start, side="right"), n_experts - 1)
    n_used = (padded_end[-1] + block - 1) // block  # blocks holding assignments (<= n_blocks)

    def run_block(j: Array, y: Array) -> Array:
        e = block_expert[j]
        xb = jax.lax.dynamic_index_in_dim(x_blocks, j, axis=0, keepdims=False)  # [b, D]
        yb = expert_ffn(xb, _take_expert(w_gate, e), _take_expert(w_value, e), _take_expert(w_down, e))
        updated: Array = jax.lax.dynamic_update_index_in_dim(y, yb, j, axis=0)
        return updated

    # A loop with a dynamic trip count: only the used blocks run, so unchosen experts are never read.
    y_blocks = jax.lax.fori_loop(0, n_used, run_block, jnp.zeros((n_blocks, block, d), jnp.bfloat16))
    y_assign = y_blocks.reshape(n_rows, d)[dest]  # [N·k, D] in sorted order
    weighted = y_assign.astype(jnp.float32) * flat_gate[order][:, None]
    out = jnp.zeros((n, d), jnp.float32).at[flat_token[order]].add(weighted)  # [N, D]
    return out.astype(jnp.bfloat16).reshape(*lead, d)
