"""The sharding plan: which device holds which slice of every tensor, and what that costs in bytes.

Standard library only (like `model_config`), so the operator's capacity planner and startup-probe
budget, the worker's `NamedSharding`s (`grok_worker.model.sharding`), the checkpoint loader's
per-host reads and `grok-worker plan` all derive from this ONE description.

Data flow: `ModelConfig` + `MeshSpec` -> `layout()` -> `Layout` (which mesh axes each logical axis
is split over) -> per tensor `dim_axes()` -> per device `index_box()` -> `device_bytes()`,
`host_read_bytes()`, `device_plan()`.

The mesh has four axes, device-major to minor: "data", "expert", "model_kv", "model_q". The
contract's "model" axis (size M) is split as model_kv × model_q: query heads, expert FFN width and
vocabulary use both (tensor parallelism over all M devices), the KV heads only "model_kv". So when
M exceeds the KV heads (Grok-1 on M=16 with 8 KV heads: model_kv=8, model_q=2) each device holds
the one KV head its 3 query heads use, instead of the whole cache. Because "model" is the minor
axis, a host's devices hold consecutive model shards: the model axis stays inside a host and the
expert and data axes span hosts (host h holds devices [h·D/hosts, (h+1)·D/hosts)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product
from typing import TYPE_CHECKING

from grok_worker.model_config import ModelConfig, Quantization, TensorSpec

if TYPE_CHECKING:
    from grok_worker.contract import MeshSpec

#: Mesh axes, major to minor (device order of `grok_worker.model.sharding.make_mesh`).
MESH_AXES = ("data", "expert", "model_kv", "model_q")
#: The contract's "model" axis: its two parts together.
MODEL_AXES = ("model_kv", "model_q")

#: The rule table: logical axis -> the mesh axes it is split over when they divide it (else replicated).
RULES: dict[str, tuple[str, ...]] = {
    "batch": ("data",),
    "vocab": MODEL_AXES,
    "q_heads": MODEL_AXES,
    "kv_heads": ("model_kv",),
    "ffn": MODEL_AXES,
    "expert": ("expert",),
    "embed": (),
    "layers": (),
    "seq": (),
    "head_dim": (),
    "scale_groups": (),
    "norm": (),
    "route": (),
}

#: Logical axes of each params entry; an int8 weight's scales use the same axes with the input
#: axis replaced by "scale_groups" (replicated: each device slices the groups its rows use).
PARAM_AXES: dict[str, tuple[str, ...]] = {
    "embed": ("vocab", "embed"),
    "final_norm": ("norm",),
    "attn_norm": ("norm",),
    "attn_out_norm": ("norm",),
    "moe_norm": ("norm",),
    "moe_out_norm": ("norm",),
    "router": ("embed", "route"),
    "wq": ("embed", "q_heads"),
    "wk": ("embed", "kv_heads"),
    "wv": ("embed", "kv_heads"),
    "wo": ("q_heads", "embed"),
    "w_gate": ("expert", "embed", "ffn"),
    "w_value": ("expert", "embed", "ffn"),
    "w_down": ("expert", "ffn", "embed"),
}

#: KV cache: k/v [layers, batch, max_len, kv_heads, head_dim], valid [batch, max_len], lengths [batch].
CACHE_AXES: dict[str, tuple[str, ...]] = {
    "k": ("layers", "batch", "seq", "kv_heads", "head_dim"),
    "v": ("layers", "batch", "seq", "kv_heads", "head_dim"),
    "valid": ("batch", "seq"),
    "lengths": ("batch",),
}
_CACHE_ITEMSIZE = {"k": 2, "v": 2, "valid": 1, "lengths": 4}
_ITEMSIZE = {"int8": 1, "bfloat16": 2, "float32": 4}

Box = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Layout:
    """Mesh axis sizes and, per logical axis, the mesh axes it is split over (hashable: static in jit)."""

    data: int
    expert: int
    model_kv: int
    model_q: int
    splits: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def mesh_shape(self) -> tuple[int, int, int, int]:
        return (self.data, self.expert, self.model_kv, self.model_q)

    @property
    def size(self) -> int:
        return math.prod(self.mesh_shape)

    def axis_size(self, mesh_axis: str) -> int:
        return self.mesh_shape[MESH_AXES.index(mesh_axis)]

    def split(self, logical: str) -> tuple[str, ...]:
        """Mesh axes `logical` is split over (() = replicated); "batch" depends on the batch: see batch_axes."""
        return dict(self.splits).get(logical, ())

    def ways(self, axes: tuple[str, ...]) -> int:
        return math.prod(self.axis_size(a) for a in axes)

    def batch_axes(self, batch: int) -> tuple[str, ...]:
        """The data axis splits the batch only when it divides it (a batch-1 prefill is replicated)."""
        return ("data",) if self.data > 1 and batch % self.data == 0 else ()

    def dim_axes(self, axes: tuple[str, ...], shape: tuple[int, ...]) -> tuple[tuple[str, ...], ...]:
        """Mesh axes each dimension of a tensor with these logical axes is split over."""
        out = []
        for name, size in zip(axes, shape, strict=True):
            split = self.batch_axes(size) if name == "batch" else self.split(name)
            out.append(split if split and size % self.ways(split) == 0 else ())
        return tuple(out)

    def devices(self) -> list[dict[str, int]]:
        """Every device's coordinates, in device order (data-major, model_q minor)."""
        return [dict(zip(MESH_AXES, c, strict=True)) for c in product(*(range(n) for n in self.mesh_shape))]


def _aligned(m: int, parts: int) -> bool:
    """Splitting `parts` int8 scale groups' rows over m devices keeps each device inside whole groups
    or each group on whole devices."""
    return parts % m == 0 or m % parts == 0


def heads_split(cfg: ModelConfig, model: int) -> int | None:
    """model_kv for a model axis of `model` devices, or None when heads cannot be split over it.

    Query heads are split when M divides them and every device's query heads share the KV heads it
    holds: M divides the KV heads (each device a whole number of KV groups) or the KV heads divide
    M (each device one KV head, M/K devices per KV head). Wo's int8 scale groups must align too.
    """
    k, q = cfg.n_kv_heads, cfg.n_q_heads
    if model == 1 or q % model or not _aligned(model, cfg.wide_input_scale_groups):
        return None
    if k % model == 0:
        return model
    return k if model % k == 0 else None


def layout(cfg: ModelConfig, mesh: MeshSpec) -> Layout:
    """Resolve the rule table for this model on this mesh."""
    m = mesh.model
    kv = heads_split(cfg, m)
    model_kv, model_q = (kv, m // kv) if kv is not None else (m, 1)
    splits: dict[str, tuple[str, ...]] = {}
    if kv is not None:
        splits["q_heads"] = MODEL_AXES
        splits["kv_heads"] = ("model_kv",) if model_kv > 1 else ()
    if m > 1 and cfg.vocab_size % m == 0:
        splits["vocab"] = MODEL_AXES
    if m > 1 and cfg.ffn_size % m == 0 and _aligned(m, cfg.wide_input_scale_groups):
        splits["ffn"] = MODEL_AXES
    if mesh.expert > 1 and cfg.n_experts % mesh.expert == 0:
        splits["expert"] = ("expert",)
    return Layout(mesh.data, mesh.expert, model_kv, model_q, tuple(sorted(splits.items())))


# ---- index boxes -------------------------------------------------------------------------------
def index_box(lay: Layout, axes: tuple[str, ...], shape: tuple[int, ...], device: dict[str, int]) -> Box:
    """The [start, stop) slice of each dimension that `device` holds."""
    box = []
    for size, split in zip(shape, lay.dim_axes(axes, shape), strict=True):
        index, ways = 0, 1
        for a in split:
            index, ways = index * lay.axis_size(a) + device[a], ways * lay.axis_size(a)
        step = size // ways
        box.append((index * step, (index + 1) * step))
    return tuple(box)


def box_size(box: Box) -> int:
    return math.prod(stop - start for start, stop in box)


def scale_axes(spec: TensorSpec) -> tuple[str, ...]:
    axes = PARAM_AXES[spec.key]
    return (*axes[:-2], "scale_groups", axes[-1])


def _leaf_parts(spec: TensorSpec) -> list[tuple[tuple[str, ...], tuple[int, ...], int]]:
    """(logical axes, shape, device itemsize) of a leaf's arrays: [weight] or [weight, scales]."""
    parts = [(PARAM_AXES[spec.key], spec.shape, _ITEMSIZE[spec.device_dtype])]
    if spec.quantized:
        parts.append((scale_axes(spec), spec.scales_shape, _ITEMSIZE["bfloat16"]))
    return parts


def weight_bytes(cfg: ModelConfig, quantization: Quantization, lay: Layout, device: dict[str, int]) -> int:
    """Bytes of weights (scales included) `device` holds."""
    return sum(
        box_size(index_box(lay, axes, shape, device)) * itemsize
        for spec in cfg.tensor_specs(quantization)
        for axes, shape, itemsize in _leaf_parts(spec)
    )


def cache_shapes(cfg: ModelConfig, batch: int, max_len: int) -> dict[str, tuple[int, ...]]:
    kv = (cfg.n_layers, batch, max_len, cfg.n_kv_heads, cfg.head_dim)
    return {"k": kv, "v": kv, "valid": (batch, max_len), "lengths": (batch,)}


def cache_bytes(cfg: ModelConfig, lay: Layout, batch: int, max_len: int, device: dict[str, int]) -> int:
    """Bytes of the KV cache (k, v, valid, lengths) `device` holds for batch × max_len."""
    shapes = cache_shapes(cfg, batch, max_len)
    return sum(
        box_size(index_box(lay, CACHE_AXES[n], s, device)) * _CACHE_ITEMSIZE[n] for n, s in shapes.items()
    )


# ---- hosts ------------------------------------------------------------------------------------
def host_devices(lay: Layout, hosts: int, host: int) -> list[dict[str, int]]:
    """The devices of `host` (consecutive in device order, like jax.devices() across processes)."""
    if hosts < 1 or lay.size % hosts or not 0 <= host < hosts:
        raise ValueError(
            f"hosts={hosts}, host={host}: the {lay.size} devices must split evenly over the hosts"
        )
    per = lay.size // hosts
    return lay.devices()[host * per : (host + 1) * per]


def _file_parts(spec: TensorSpec) -> list[tuple[tuple[str, ...], tuple[int, ...], int]]:
    """(logical axes, shape, itemsize) of a leaf as the release file stores it: int8 matrices with
    bf16 scales, float32 for everything else (the embedding too, before the bf16 conversion)."""
    if spec.quantized:
        return _leaf_parts(spec)
    return [(PARAM_AXES[spec.key], spec.shape, _ITEMSIZE["float32"])]


def host_leaf_boxes(
    spec: TensorSpec, lay: Layout, hosts: int, host: int
) -> list[tuple[tuple[int, ...], int, set[Box]]]:
    """Per array of a checkpoint leaf (weight, then scales): (shape, itemsize, distinct boxes the host's
    devices hold). Boxes come from one grid per tensor, so distinct boxes never overlap."""
    devices = host_devices(lay, hosts, host)
    return [
        (shape, itemsize, {index_box(lay, axes, shape, d) for d in devices})
        for axes, shape, itemsize in _file_parts(spec)
    ]


def host_read_bytes(cfg: ModelConfig, mesh: MeshSpec, hosts: int, host: int) -> int:
    """Checkpoint bytes `host` must read: per leaf, the union of its devices' boxes, scales included.

    Read from the release's int8 files whatever the device quantization (a bf16 worker dequantizes
    the same slices), so the int8 tensor specs define the leaves.
    """
    lay = layout(cfg, mesh)
    return sum(
        sum(box_size(b) for b in boxes) * itemsize
        for spec in cfg.tensor_specs("int8")
        for _, itemsize, boxes in host_leaf_boxes(spec, lay, hosts, host)
    )


# ---- the memory plan --------------------------------------------------------------------------
@dataclass(frozen=True)
class DevicePlan:
    """Bytes one device holds (every device holds the same: splits are even by construction)."""

    layout: Layout
    weights_bytes: int
    kv_cache_bytes: int


def device_plan(
    cfg: ModelConfig, quantization: Quantization, mesh: MeshSpec, *, batch: int, max_len: int
) -> DevicePlan:
    """Per-device weight bytes (scales included) and KV-cache bytes for batch × max_len."""
    lay = layout(cfg, mesh)
    first = lay.devices()[0]
    return DevicePlan(
        layout=lay,
        weights_bytes=weight_bytes(cfg, quantization, lay, first),
        kv_cache_bytes=cache_bytes(cfg, lay, batch, max_len, first),
    )


def max_host_read_bytes(cfg: ModelConfig, mesh: MeshSpec, hosts: int) -> int:
    """The most checkpoint bytes any one host of a group reads (what its startup budget must allow)."""
    return max(host_read_bytes(cfg, mesh, hosts, h) for h in range(hosts))
