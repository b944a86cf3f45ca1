"""The `grok-worker plan` report: the sharding plan next to what XLA compiled (imports JAX).

Data flow: ModelConfig + mesh + `Shape` -> `shard_plan` (bytes per device and host) and
`model.aot` (prefill and decode compiled at 1 and 2 layers on fake devices, scaled to all layers)
-> `PlanResult` -> text. Run it with as many host devices as the mesh has (`plan_cli` sets
XLA_FLAGS before JAX loads).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax

from grok_worker.contract import MeshSpec
from grok_worker.model.aot import ScaledReport, compile_decode, compile_prefill, scale
from grok_worker.model.sharding import make_mesh
from grok_worker.model_config import ModelConfig, Quantization
from grok_worker.shard_plan import DevicePlan, device_plan, host_read_bytes

GIB = 2**30


@dataclass(frozen=True)
class Shape:
    """The serving shape and hardware to plan for."""

    hosts: int
    batch: int
    seq_len: int
    prefill_len: int
    gpu_memory: int


@dataclass(frozen=True)
class PlanResult:
    cfg: ModelConfig
    mesh: MeshSpec
    shape: Shape
    plan: DevicePlan
    decode: ScaledReport
    prefill: ScaledReport
    host_reads: tuple[int, ...]

    @property
    def required_bytes(self) -> int:
        """Weights + KV cache + the larger step's temporaries (prefill also holds its prompt's cache)."""
        prefill_extra = self.prefill.temp_bytes + self.prefill.cache_shard_bytes
        return self.decode.argument_bytes + max(self.decode.temp_bytes, prefill_extra)

    @property
    def fits(self) -> bool:
        return self.required_bytes <= self.shape.gpu_memory


def _compile_scaled(
    cfg: ModelConfig, quantization: Quantization, mesh: MeshSpec, shape: Shape
) -> tuple[ScaledReport, ScaledReport]:
    decode, prefill = [], []
    for layers in (1, 2):
        small = cfg.with_overrides(n_layers=layers)
        jax_mesh = make_mesh(mesh, jax.devices()[: mesh.size], cfg=small)
        decode.append(compile_decode(small, quantization, jax_mesh, shape.batch, shape.seq_len))
        prefill.append(compile_prefill(small, quantization, jax_mesh, shape.prefill_len))
    return scale(decode[0], decode[1], cfg.n_layers), scale(prefill[0], prefill[1], cfg.n_layers)


def plan(cfg: ModelConfig, quantization: Quantization, mesh: MeshSpec, shape: Shape) -> PlanResult:
    decode, prefill = _compile_scaled(cfg, quantization, mesh, shape)
    return PlanResult(
        cfg=cfg,
        mesh=mesh,
        shape=shape,
        plan=device_plan(cfg, quantization, mesh, batch=shape.batch, max_len=shape.seq_len),
        decode=decode,
        prefill=prefill,
        host_reads=tuple(host_read_bytes(cfg, mesh, shape.hosts, h) for h in range(shape.hosts)),
    )


def _gib(n: float) -> str:
    return f"{n / GIB:8.2f} GiB"


def _collective_lines(r: PlanResult) -> list[str]:
    per_host = r.mesh.size // r.shape.hosts
    lines, total, across = [], 0.0, 0.0
    for sc in r.decode.collectives:
        c = sc.op
        crosses = c.crosses_hosts(per_host)
        arrays = ", ".join(f"{dt}[{','.join(map(str, s))}]" for dt, s in c.arrays)
        wire = c.wire_bytes() * sc.count
        total += wire
        across += wire if crosses else 0.0
        where = "crosses hosts" if crosses else "inside a host"
        lines.append(
            f"  {sc.count:4d} × {c.kind} {arrays} over {c.group_size} devices ({where}): "
            f"{wire / 2**20:.2f} MiB sent per device"
        )
    lines.append(
        f"  total sent per device per decode step: {total / 2**20:.2f} MiB, of which across hosts "
        f"{across / 2**20:.2f} MiB ({across / r.shape.batch / 2**10:.1f} KiB per token)"
    )
    lines.append(
        f"  int8 weights in any collective: {r.decode.int8_collectives + r.prefill.int8_collectives}"
    )
    return lines


def text(r: PlanResult) -> str:
    lay, s = r.plan.layout, r.shape
    head = (
        f"{r.cfg.name}: {r.cfg.n_layers} layers, d_model {r.cfg.d_model}, {r.cfg.n_experts} experts; "
        f"mesh {r.mesh.to_env()} (model = model_kv {lay.model_kv} × model_q {lay.model_q}) on {s.hosts} "
        f"host(s) × {r.mesh.size // s.hosts} devices; batch {s.batch} × {s.seq_len} positions, prefill "
        f"{s.prefill_len} tokens"
    )
    lines = [
        head,
        "per device (XLA memory analysis, CPU backend, compiled at 1 and 2 layers, scaled to all):",
        "                              plan       compiler",
        f"  weights + KV cache    {_gib(r.plan.weights_bytes + r.plan.kv_cache_bytes)} {_gib(r.decode.argument_bytes)}",
        f"    KV cache            {_gib(r.plan.kv_cache_bytes)} {_gib(r.decode.cache_shard_bytes)}",
        f"  decode temporaries                {_gib(r.decode.temp_bytes)}",
        f"  prefill temporaries               {_gib(r.prefill.temp_bytes)} (+ its prompt cache "
        f"{_gib(r.prefill.cache_shard_bytes).strip()})",
        "collectives per decode step:",
        *_collective_lines(r),
        "checkpoint bytes each host reads: " + ", ".join(_gib(b).strip() for b in r.host_reads),
        f"needs {_gib(r.required_bytes).strip()} per device of {_gib(s.gpu_memory).strip()}: "
        + ("FITS" if r.fits else "DOES NOT FIT"),
    ]
    return "\n".join(lines)


def report(cfg: ModelConfig, quantization: Quantization, mesh: MeshSpec, shape: Shape) -> str:
    return text(plan(cfg, quantization, mesh, shape))
