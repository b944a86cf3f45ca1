"""The per-device view of the forward pass: which slice this device holds and the explicit collectives.

`transformer.forward` runs its body once per device under `jax.shard_map` whenever the weights
live on a mesh (their sharding names it), with in/out specs from the sharding plan
(`grok_worker.shard_plan`). Inside, every array is this device's slice, and `Shards` says what
to add up across devices:
- attention: this device's query heads and the KV heads they use; Wo's partial sums are summed
  over the "model" axes (an all-reduce of [N, D] float32 activations, N tokens);
- MoE: this device's experts (over "expert") and FFN columns (over "model"); the partial outputs
  are summed over both axes at once (one all-reduce of [N, D] float32);
- embedding: this device's vocabulary rows; the looked-up rows are summed over "model".
No weight ever crosses devices. With no mesh `Shards()` makes every collective a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax

from grok_worker.model.layers import QuantizedWeight, Weight
from grok_worker.shard_plan import Layout

Array = jax.Array


@dataclass(frozen=True)
class Shards:
    """This device's place in the layout (None: one device, nothing to add up)."""

    layout: Layout | None = None

    def axes(self, *logical: str) -> tuple[str, ...]:
        """The mesh axes the given logical axes are split over (no repeats, mesh order)."""
        if self.layout is None:
            return ()
        lay = self.layout
        found = {a for name in logical for a in lay.split(name)}
        return tuple(a for a in ("data", "expert", "model_kv", "model_q") if a in found)

    def psum(self, x: Array, *logical: str) -> Array:
        """Sum x over the devices that split the given logical axes."""
        axes = self.axes(*logical)
        if not axes:
            return x
        summed: Array = jax.lax.psum(x, axes)  # type: ignore[no-untyped-call]
        return summed

    def index(self, logical: str) -> Array | int:
        """This device's position along the mesh axes splitting `logical` (0 when not split)."""
        index: Array | int = 0
        assert self.layout is not None or not self.axes(logical)
        for a in self.axes(logical):
            assert self.layout is not None
            index = index * self.layout.axis_size(a) + jax.lax.axis_index(a)
        return index


def local_scales(w: Weight, rows_total: int, index: Array | int) -> Weight:
    """An int8 weight whose input rows are split keeps all G scale groups (they are tiny and
    replicated); take the groups this device's rows [index·rows, (index+1)·rows) use."""
    if not isinstance(w, QuantizedWeight):
        return w
    rows, groups = w.weight.shape[-2], w.scales.shape[-2]
    if rows == rows_total or groups == 1:
        return w
    per_group = rows_total // groups
    size = max(1, rows // per_group)
    start = index * rows // per_group
    return QuantizedWeight(
        w.weight, jax.lax.dynamic_slice_in_dim(w.scales, start, size, axis=w.scales.ndim - 2)
    )
