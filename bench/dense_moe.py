"""The baseline for figure 2: the release's approach to MoE, "compute all experts, then select".

The released Grok-1 code runs every token through all eight experts and only then keeps the two
the router chose. `dense_moe` does the same with the project's own pieces (its float32 router
`route` and its int8 `expert_ffn`, so both sides use identical kernels and weights): the only
difference from the project's `moe` is how much expert work is done. Written for the benchmark;
nothing in the worker uses it.

Shapes: x [N, D] tokens; router [D, E]; stacked expert weights [E, D, F] / [E, F, D] (int8 with
bf16 scales, or bf16). Output [N, D] bfloat16.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from grok_worker.model.layers import Weight
from grok_worker.model.moe import expert_ffn, route


def _expert(w: Weight, e: int) -> Weight:
    """Expert e's slice of a stacked [E, ...] weight (weight and scales alike)."""
    sliced: Weight = jax.tree.map(lambda a: a[e], w)
    return sliced


def dense_moe(
    x: jax.Array,
    token_mask: jax.Array,
    router: jax.Array,
    w_gate: Weight,
    w_value: Weight,
    w_down: Weight,
    k: int,
) -> jax.Array:
    """Same signature and result as `grok_worker.model.moe.moe`, computing every expert on every token."""
    lead, d = x.shape[:-1], x.shape[-1]
    flat = x.reshape(-1, d)  # [N, D]
    n_experts = router.shape[-1]
    gates, experts = route(flat, router, token_mask.reshape(-1), k)  # [N, k] each
    onehot = jax.nn.one_hot(experts, n_experts, dtype=jnp.float32)  # [N, k, E]
    dense_gates = jnp.einsum("nk,nke->ne", gates, onehot)  # [N, E], 0 where not chosen
    out = jnp.zeros(flat.shape, jnp.float32)
    for e in range(n_experts):  # all experts, all tokens: N·E rows of work
        y = expert_ffn(flat, _expert(w_gate, e), _expert(w_value, e), _expert(w_down, e))  # [N, D]
        out = out + y.astype(jnp.float32) * dense_gates[:, e : e + 1]
    return out.astype(jnp.bfloat16).reshape(*lead, d)
