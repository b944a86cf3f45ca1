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

from grok_worker.model.layers import QuantizedWeight, Weight, linear, linear_f32

Array = jax.Array

#: Largest number of rows per expert block (prefill); decode uses block = number of tokens.
MAX_BLOCK = 128


def route(
    x: Array, router: Array, token_mask: Array, k: int, forced: Array | None = None
) -> tuple[Array, Array]:
    """Softmax router in float32 over all experts, then top-k.

    x: [N, D]; router: [D, E]; token_mask: [N] (False for padding, whose gates become 0).
    Returns gates [N, k] float32 (raw probabilities, NOT renormalised) and expert ids [N, k].
    `forced` [N, k] (tests: a reference's choices) replaces the top-k ids; the gates are still ours.
    """
    logits = jnp.dot(x.astype(jnp.float32), router.astype(jnp.float32))  # [N, E]
    probs = jax.nn.softmax(logits, axis=-1) * token_mask[:, None].astype(jnp.float32)
    if forced is not None:
        experts = forced.astype(jnp.int32)
        return jnp.take_along_axis(probs, experts, axis=-1), experts
    gates, experts = jax.lax.top_k(probs, k)
    return gates, experts.astype(jnp.int32)


def expert_ffn(x: Array, w_gate: Weight, w_value: Weight, w_down: Weight) -> Array:
    """down(gelu_tanh(x·W_gate) * (x·W_value)) for one expert: [R, D] -> [R, D] bf16."""
    return expert_ffn_f32(x, w_gate, w_value, w_down).astype(jnp.bfloat16)


def expert_ffn_f32(x: Array, w_gate: Weight, w_value: Weight, w_down: Weight) -> Array:
    """The expert FFN with its down projection left in float32 (a partial sum when F is sharded)."""
    hidden = jax.nn.gelu(linear(x, w_gate), approximate=True) * linear(x, w_value)  # [R, F]
    return linear_f32(hidden, w_down)


def _take_expert(w: Weight, e: Array) -> Weight:
    """Expert e's slice of a stacked [E, ...] weight (int8 and scales sliced alike, no copy of others)."""
    sliced: Weight = jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, e, axis=0, keepdims=False), w)
    return sliced


def _n_experts(w: Weight) -> int:
    return int((w.weight if isinstance(w, QuantizedWeight) else w).shape[0])


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
    return moe_partial(x, token_mask, router, w_gate, w_value, w_down, k).astype(jnp.bfloat16)


def moe_partial(
    x: Array,
    token_mask: Array,
    router: Array,
    w_gate: Weight,
    w_value: Weight,
    w_down: Weight,
    k: int,
    first: Array | int = 0,
    forced: Array | None = None,
) -> Array:
    """float32 [..., D]: the contribution of the experts held here, w_*[E_l] = global ids first…first+E_l-1.

    With all experts here (first = 0) this is the whole MoE output; under expert/tensor parallelism
    the caller sums the devices' partial outputs (an all-reduce of activations only).
    """
    lead, d = x.shape[:-1], x.shape[-1]
    flat = x.reshape(-1, d)  # [N, D]
    n = flat.shape[0]
    n_local = _n_experts(w_gate)
    gates, experts = route(flat, router, token_mask.reshape(-1), k, forced)  # [N, k] each

    block = min(n, MAX_BLOCK)
    n_assign = n * k
    # Sum over experts of ceil(count/block) < n_assign/block + E, so this many blocks always suffice.
    n_blocks = n_assign // block + n_local
    n_rows = n_blocks * block

    local = experts.reshape(-1) - first  # [N·k] local expert id
    mine = (local >= 0) & (local < n_local)  # [N·k] assignments to experts held here
    flat_expert = jnp.where(mine, local, n_local)  # other devices' experts sort last
    flat_token = jnp.repeat(jnp.arange(n, dtype=jnp.int32), k)  # [N·k]
    flat_gate = jnp.where(mine, gates.reshape(-1), 0.0)  # [N·k]
    order = jnp.argsort(flat_expert, stable=True)
    sorted_expert = flat_expert[order]
    counts = jnp.zeros(n_local, jnp.int32).at[flat_expert].add(1, mode="drop")  # [E_l]
    padded = (counts + block - 1) // block * block  # [E_l] rows per expert, whole blocks
    padded_end = jnp.cumsum(padded)
    padded_start = padded_end - padded
    start = jnp.cumsum(counts) - counts
    safe = jnp.minimum(sorted_expert, n_local - 1)
    rank = jnp.arange(n_assign, dtype=jnp.int32) - start[safe]
    dest = jnp.where(mine[order], padded_start[safe] + rank, n_rows)  # [N·k] row (n_rows: not here)

    # Row -> source token; unused rows point at an all-zero sentinel row N.
    row_token = jnp.full(n_rows, n, jnp.int32).at[dest].set(flat_token[order], mode="drop")
    x_rows = jnp.concatenate([flat, jnp.zeros((1, d), flat.dtype)])[row_token]  # [R, D]
    x_blocks = x_rows.reshape(n_blocks, block, d)  # [nb, b, D]
    block_start = jnp.arange(n_blocks, dtype=jnp.int32) * block
    block_expert = jnp.minimum(jnp.searchsorted(padded_end, block_start, side="right"), n_local - 1)
    n_used = (padded_end[-1] + block - 1) // block  # blocks holding assignments (<= n_blocks)

    def run_block(j: Array, y: Array) -> Array:
        e = block_expert[j]
        xb = jax.lax.dynamic_index_in_dim(x_blocks, j, axis=0, keepdims=False)  # [b, D]
        yb = expert_ffn_f32(xb, _take_expert(w_gate, e), _take_expert(w_value, e), _take_expert(w_down, e))
        updated: Array = jax.lax.dynamic_update_index_in_dim(y, yb, j, axis=0)
        return updated

    # A loop with a dynamic trip count: only the used blocks run, so unchosen experts are never read.
    y_blocks = jax.lax.fori_loop(0, n_used, run_block, jnp.zeros((n_blocks, block, d), jnp.float32))
    y_assign = jnp.take(y_blocks.reshape(n_rows, d), dest, axis=0, mode="fill", fill_value=0)  # [N·k, D]
    weighted = y_assign * flat_gate[order][:, None]
    out = jnp.zeros((n, d), jnp.float32).at[flat_token[order]].add(weighted)  # [N, D]
    return out.reshape(*lead, d)
