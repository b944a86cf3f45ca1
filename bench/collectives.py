"""Figure 8: bytes moved between devices per decode step ÷ the activation bytes that must move
(`python -m bench collectives`).

Measured: the decode step of Grok-1 at full width (batch 8 × 8192 positions) compiled ahead of time
on 16 fake CPU devices at 1 and 2 layers with abstract weights (`grok_worker.model.aot`), every
collective of the partitioned program scaled to 64 layers, and the bytes each device sends for
them with ring algorithms (all-reduce: 2(p-1)/p of the payload).

Limit, from the sharding plan alone (no compiler): per layer, the attention block's output
[B, D] float32 partial sums must be added up over the devices holding parts of its heads, and the
MoE block's over the devices holding parts of its experts (expert × model); the embedding rows over
the devices holding parts of the vocabulary (bf16). Same ring formula. Goal: measured ÷ limit <= 1.5.
A second figure counts int8 (weight) bytes in any collective of prefill or decode: goal 0.
Smoke size: the tiny preset on 4 devices.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from bench.options import Options
from bench.report import Figure, Result
from grok_worker.contract import MeshSpec
from grok_worker.model_config import PRESETS, ModelConfig
from grok_worker.shard_plan import layout

NAME = "collectives"
FULL = (
    "grok-1",
    16,
    8,
    8192,
    [("model=8", 1), ("expert=2,model=8", 2), ("model=16", 2), ("data=2,expert=8", 2)],
)
SMOKE = ("tiny", 4, 2, 64, [("model=4", 1), ("expert=2,model=2", 2)])


def _ring(bytes_: float, p: int) -> float:
    return 2 * (p - 1) / p * bytes_ if p > 1 else 0.0


def required_bytes(cfg: ModelConfig, mesh: MeshSpec, batch: int) -> float:
    """Bytes each device must send per decode step to add up activations split by the plan."""
    lay = layout(cfg, mesh)
    rows = batch // lay.ways(lay.batch_axes(batch))  # tokens this device's data shard decodes
    row_f32 = rows * cfg.d_model * 4
    heads = lay.ways(lay.split("q_heads"))
    experts = lay.ways(tuple(dict.fromkeys(lay.split("expert") + lay.split("ffn"))))
    embed = _ring(rows * cfg.d_model * 2, lay.ways(lay.split("vocab")))
    return embed + cfg.n_layers * (_ring(row_f32, heads) + _ring(row_f32, experts))


def _measure(preset: str, meshes: list[tuple[str, int]], batch: int, seq: int) -> dict[str, Any]:
    """In a process with enough fake devices: wire bytes per decode step and int8 bytes moved."""
    import jax

    from grok_worker.model.aot import compile_decode, compile_prefill, scale
    from grok_worker.model.sharding import make_mesh

    full = PRESETS[preset]
    out = {}
    for text, hosts in meshes:
        spec = MeshSpec.from_env(text)
        reports, int8 = [], 0
        for layers in (1, 2):
            cfg = full.with_overrides(n_layers=layers)
            mesh = make_mesh(spec, jax.devices()[: spec.size], cfg=cfg)
            reports.append(compile_decode(cfg, "int8", mesh, batch, seq))
        prefill = compile_prefill(cfg, "int8", mesh, min(seq, 512))
        for report in (*reports, prefill):
            int8 += sum(c.bytes for c in report.collectives if "s8" in c.dtypes)
        scaled = scale(reports[0], reports[1], full.n_layers)
        per_host = spec.size // hosts
        wire = sum(c.op.wire_bytes() * c.count for c in scaled.collectives)
        across = sum(c.op.wire_bytes() * c.count for c in scaled.collectives if c.op.crosses_hosts(per_host))
        out[text] = {"wire": wire, "across_hosts": across, "int8": int8}
    return out


def run(options: Options) -> Result:
    preset, devices, batch, seq, meshes = SMOKE if options.smoke else FULL
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    args = json.dumps([preset, meshes, batch, seq])
    proc = subprocess.run(
        [sys.executable, "-m", "bench.collectives", args], env=env, capture_output=True, text=True, check=True
    )
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    result = Result(NAME)
    cfg = PRESETS[preset]
    for text, hosts in meshes:
        m = measured[text]
        tag = f"{preset}_{text.replace(',', '_').replace('=', '')}_b{batch}"
        need = required_bytes(cfg, MeshSpec.from_env(text), batch)
        result.add(Figure(NAME, f"bytes_sent_per_decode_step_{tag}", m["wire"], "B", need, "<=1.5"))
        result.add(Figure(NAME, f"int8_bytes_in_collectives_{tag}", m["int8"], "B", None, "==0"))
        result.note(
            text,
            f"{hosts} host(s); {m['across_hosts'] / 2**20:.2f} MiB per device per step cross hosts "
            f"({m['across_hosts'] / batch / 2**10:.1f} KiB per token)",
        )
    return result


if __name__ == "__main__":  # subprocess entry: measure with this process's fake devices
    preset_arg, meshes_arg, batch_arg, seq_arg = json.loads(sys.argv[1])
    print(json.dumps(_measure(preset_arg, [(m, h) for m, h in meshes_arg], batch_arg, seq_arg)))
