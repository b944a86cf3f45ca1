"""Compile prefill and decode ahead of time on abstract weights, and read XLA's verdict.

Data flow: ModelConfig + quantization + mesh -> abstract params and cache (`jax.ShapeDtypeStruct`
with the plan's `NamedSharding`s: no weight memory) -> `jax.jit(...).lower().compile()` ->
`StepReport`: XLA's per-device memory analysis, every collective of the partitioned program with
its payload bytes and whether it crosses hosts, and the per-device shard bytes of the KV cache.

Used by `grok-worker plan` (on fake host devices: XLA_FLAGS=--xla_force_host_platform_device_count),
the plan-versus-compiler tests and `bench collectives`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from grok_worker.model.cache import KVCache
from grok_worker.model.layers import QuantizedWeight
from grok_worker.model.params import Params, params_from_leaves
from grok_worker.model.sharding import cache_shardings, replicated, spec_shardings
from grok_worker.model.transformer import decode_step, prefill
from grok_worker.model_config import ModelConfig, Quantization

_DTYPES = {"int8": jnp.int8, "bfloat16": jnp.bfloat16, "float32": jnp.float32}
_HLO_ITEMSIZE = {"s8": 1, "u8": 1, "pred": 1, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "f32": 4, "s64": 8}
_KINDS = ("all-reduce", "all-gather", "all-to-all", "reduce-scatter", "collective-permute")
_OP = re.compile(r"=\s*(\(.*?\)|\S+)\s+(" + "|".join(_KINDS) + r")(?:-start)?\(")
_ARRAY = re.compile(r"(\w+)\[([\d,]*)\]")


@dataclass(frozen=True)
class Collective:
    """One collective of a compiled step: kind, result arrays, device groups, payload bytes."""

    kind: str
    arrays: tuple[tuple[str, tuple[int, ...]], ...]
    groups: tuple[tuple[int, ...], ...]

    @property
    def bytes(self) -> int:
        """Bytes of the collective's result per device (for an all-gather: the gathered array)."""
        return sum(math.prod(shape) * _HLO_ITEMSIZE.get(dt, 4) for dt, shape in self.arrays)

    @property
    def dtypes(self) -> set[str]:
        return {dt for dt, _ in self.arrays}

    @property
    def group_size(self) -> int:
        return max((len(g) for g in self.groups), default=1)

    def wire_bytes(self) -> float:
        """Bytes each device sends for it with ring algorithms (all-reduce: 2(p-1)/p of the payload)."""
        p = self.group_size
        if self.kind == "collective-permute":
            return float(self.bytes)
        factor = 2 * (p - 1) / p if self.kind == "all-reduce" else (p - 1) / p
        return factor * self.bytes

    def crosses_hosts(self, devices_per_host: int) -> bool:
        return any(len({d // devices_per_host for d in g}) > 1 for g in self.groups)


def _iota_groups(text: str) -> tuple[tuple[int, ...], ...]:
    """`[2,8]<=[16]` or `[4,4]<=[4,4]T(1,0)`: iota reshaped (and transposed) into groups."""
    m = re.match(r"\[([\d,]+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?", text)
    if m is None:
        return ()
    shape = [int(x) for x in m.group(1).split(",")]
    src = [int(x) for x in m.group(2).split(",")]
    ids = np.arange(math.prod(src)).reshape(src)
    if m.group(3):
        ids = ids.transpose([int(x) for x in m.group(3).split(",")])
    return tuple(tuple(int(d) for d in row) for row in ids.reshape(shape[0], -1))


def _groups(line: str) -> tuple[tuple[int, ...], ...]:
    m = re.search(r"replica_groups=(\{\{[\d,{} ]*\}\}|\[[^ ]*)", line)
    if m is not None and m.group(1).startswith("{"):
        return tuple(
            tuple(int(d) for d in g.split(",") if d) for g in re.findall(r"\{([\d,]+)\}", m.group(1))
        )
    if m is not None:
        return _iota_groups(m.group(1))
    pairs = re.search(r"source_target_pairs=\{(.*?)\}\}", line)
    if pairs is not None:
        return tuple(
            tuple(int(d) for d in p.split(",")) for p in re.findall(r"\{?(\d+,\d+)\}?", pairs.group(1))
        )
    return ()


def collectives(hlo_text: str) -> list[Collective]:
    """Every collective in a compiled (partitioned) HLO module's text."""
    found = []
    for line in hlo_text.splitlines():
        m = _OP.search(line)
        if m is None or "-done(" in line:
            continue
        arrays = tuple(
            (dt, tuple(int(x) for x in dims.split(",") if x)) for dt, dims in _ARRAY.findall(m.group(1))
        )
        found.append(Collective(m.group(2), arrays, _groups(line)))
    return found


@dataclass(frozen=True)
class StepReport:
    """What XLA says about one compiled step, per device."""

    name: str
    argument_bytes: int
    output_bytes: int
    alias_bytes: int
    temp_bytes: int
    cache_shard_bytes: int
    collectives: tuple[Collective, ...]

    @property
    def peak_bytes(self) -> int:
        """Arguments + outputs not aliased to them + temporaries."""
        return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes


def _abstract(shape: tuple[int, ...], dtype: Any, sharding: Any) -> Any:
    """A ShapeDtypeStruct standing in for an array (typed Any: it goes where arrays go)."""
    return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)  # type: ignore[no-untyped-call]


def abstract_params(cfg: ModelConfig, quantization: Quantization, mesh: Mesh) -> Params:
    """Params of ShapeDtypeStructs carrying the plan's shardings (no memory)."""
    shardings = spec_shardings(cfg, quantization, mesh)
    leaves = {}
    for s in cfg.tensor_specs(quantization):
        sh = shardings[s.index]
        w = _abstract(s.shape, _DTYPES[s.device_dtype], sh[0])
        if s.quantized:
            w = QuantizedWeight(w, _abstract(s.scales_shape, jnp.bfloat16, sh[1]))
        leaves[s.index] = w
    return params_from_leaves(cfg, leaves, quantization)


def abstract_cache(cfg: ModelConfig, mesh: Mesh, batch: int, max_len: int) -> KVCache:
    sh = cache_shardings(cfg, mesh, batch, max_len)
    kv = (cfg.n_layers, batch, max_len, cfg.n_kv_heads, cfg.head_dim)
    return KVCache(
        k=_abstract(kv, jnp.bfloat16, sh.k),
        v=_abstract(kv, jnp.bfloat16, sh.v),
        valid=_abstract((batch, max_len), jnp.bool_, sh.valid),
        lengths=_abstract((batch,), jnp.int32, sh.lengths),
    )


def _cache_shard_bytes(compiled: jax.stages.Compiled, cache: KVCache) -> int:
    """Per-device bytes of the cache the compiled step returns, from the shardings XLA chose."""
    shardings = compiled.output_shardings[1]
    return sum(
        math.prod(sh.shard_shape(a.shape)) * a.dtype.itemsize for sh, a in zip(shardings, cache, strict=True)
    )


def _report(name: str, compiled: jax.stages.Compiled, cache: KVCache) -> StepReport:
    ma = compiled.memory_analysis()
    assert ma is not None
    return StepReport(
        name=name,
        argument_bytes=ma.argument_size_in_bytes,
        output_bytes=ma.output_size_in_bytes,
        alias_bytes=ma.alias_size_in_bytes,
        temp_bytes=ma.temp_size_in_bytes,
        cache_shard_bytes=_cache_shard_bytes(compiled, cache),
        collectives=tuple(collectives(compiled.as_text() or "")),
    )


def compile_decode(
    cfg: ModelConfig, quantization: Quantization, mesh: Mesh, batch: int, max_len: int
) -> StepReport:
    """The decode step for `batch` rows of `max_len` positions, compiled for `mesh`."""
    params = abstract_params(cfg, quantization, mesh)
    cache = abstract_cache(cfg, mesh, batch, max_len)
    rows = _abstract((batch,), jnp.int32, replicated(mesh))
    step = jax.jit(decode_step, static_argnums=1, donate_argnums=2)
    return _report("decode", step.lower(params, cfg, cache, rows, rows).compile(), cache)


def compile_prefill(cfg: ModelConfig, quantization: Quantization, mesh: Mesh, length: int) -> StepReport:
    """The prefill of one prompt bucket of `length` tokens, compiled for `mesh`."""
    params = abstract_params(cfg, quantization, mesh)
    tokens = _abstract((1, length), jnp.int32, replicated(mesh))
    n = _abstract((), jnp.int32, replicated(mesh))
    compiled = jax.jit(prefill, static_argnums=1).lower(params, cfg, tokens, n).compile()
    return _report("prefill", compiled, abstract_cache(cfg, mesh, 1, length))


# ---- scaled to all layers ----------------------------------------------------------------------
def _linear(one: float, two: float, layers: int) -> float:
    """A quantity measured with 1 and 2 layers, extrapolated to `layers` (base + per-layer slope)."""
    return one + (layers - 1) * (two - one)


def _temp_bound(one: int, two: int, layers: int) -> int:
    """Temporaries at `layers` layers, bounded from above: XLA reuses most of a layer's buffers for the
    next (measured on CPU at 1/2/4 layers: +170 MB, then +108 MB per layer), so growing by the first
    step for every layer over-estimates, and never below either measurement."""
    return max(one, two + (layers - 2) * max(0, two - one))


@dataclass(frozen=True)
class ScaledCollective:
    """A collective of the step and how many times the full-depth step runs it."""

    op: Collective
    count: int


@dataclass(frozen=True)
class ScaledReport:
    """A step compiled with 1 and 2 layers, its per-device numbers scaled to the model's depth."""

    name: str
    layers: int
    argument_bytes: int
    temp_bytes: int
    cache_shard_bytes: int
    collectives: tuple[ScaledCollective, ...]
    int8_collectives: int


def scale(one: StepReport, two: StepReport, layers: int) -> ScaledReport:
    """Extrapolate two compiles (1 and 2 layers) of the same step to `layers` layers."""
    counts_one: dict[Collective, int] = {}
    counts_two: dict[Collective, int] = {}
    for report, counts in ((one, counts_one), (two, counts_two)):
        for c in report.collectives:
            counts[c] = counts.get(c, 0) + 1
    ops = [
        ScaledCollective(c, round(_linear(counts_one.get(c, 0), counts_two.get(c, 0), layers)))
        for c in sorted(set(counts_one) | set(counts_two), key=lambda c: (c.kind, c.bytes))
    ]
    return ScaledReport(
        name=one.name,
        layers=layers,
        argument_bytes=round(_linear(one.argument_bytes, two.argument_bytes, layers)),
        temp_bytes=_temp_bound(one.temp_bytes, two.temp_bytes, layers),
        cache_shard_bytes=round(_linear(one.cache_shard_bytes, two.cache_shard_bytes, layers)),
        collectives=tuple(op for op in ops if op.count > 0),
        int8_collectives=sum("s8" in c.dtypes for c in two.collectives),
    )
