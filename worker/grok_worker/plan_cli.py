"""`grok-worker plan`: will this model fit this topology? Answered by the compiler, before renting GPUs.

Data flow: preset/dims + mesh + hosts + batch × length + quantization + GPU memory -> the sharding
plan (`grok_worker.shard_plan`: bytes per device and per host, no JAX) and, in the same process on
fake host CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count set before JAX loads),
prefill and decode compiled ahead of time with abstract weights (`grok_worker.model.aot`) at 1 and
2 layers and scaled to the model's depth -> a report: per device weights / KV cache / temporaries
from XLA's memory analysis next to the plan's, the collectives of one decode step with their bytes
(and which cross hosts), each host's checkpoint read, and whether it fits.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import fields

from grok_worker.contract import MeshSpec
from grok_worker.model_config import DIMENSION_NAMES, PRESETS, ModelConfig, Quantization
from grok_worker.shard_plan import device_plan, host_read_bytes

_UNITS = {
    "": 1,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
    "t": 10**12,
    "ki": 2**10,
    "mi": 2**20,
    "gi": 2**30,
    "ti": 2**40,
}
#: The dimensions, and the other integer fields of a ModelConfig (the int8 scale groups).
_INT_FIELDS = [*DIMENSION_NAMES, *(f.name for f in fields(ModelConfig) if f.type in ("int", int))]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="grok-1", choices=sorted(PRESETS), help="model dimensions")
    parser.add_argument(
        "--dims",
        default="",
        help=f"override dimensions, e.g. n_layers=64,d_model=6144 (any of {_INT_FIELDS})",
    )
    parser.add_argument("--mesh", default="model=8", help="data=D,expert=E,model=M (devices of one replica)")
    parser.add_argument("--hosts", type=int, default=1, help="hosts the mesh's devices are spread over")
    parser.add_argument("--batch", type=int, default=8, help="decode slots (serving.max_batch)")
    parser.add_argument("--seq-len", type=int, default=8192, help="KV-cache positions per slot")
    parser.add_argument(
        "--prefill-len", type=int, default=0, help="prompt bucket to compile (default seq-len)"
    )
    parser.add_argument("--quantization", default="int8", choices=["int8", "bf16"], help="weight storage")
    parser.add_argument("--gpu-memory", default="80Gi", help="memory of one GPU, e.g. 80Gi, 141G")


def parse_bytes(text: str) -> int:
    m = re.fullmatch(r"\s*([\d.]+)\s*([kKmMgGtT]i?)?\s*", text)
    if m is None:
        raise ValueError(f"--gpu-memory {text!r} is not a memory size; write e.g. 80Gi or 141G")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


def model_config(preset: str, dims: str) -> ModelConfig:
    cfg = PRESETS[preset]
    changes: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in dims.split(","))):
        name, _, value = part.partition("=")
        if name not in _INT_FIELDS or not value.isdigit():
            raise ValueError(f"--dims: {part!r} must be FIELD=INTEGER with FIELD one of {_INT_FIELDS}")
        changes[name] = int(value)
    return cfg.with_overrides(**changes)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = model_config(args.preset, args.dims)
        mesh = MeshSpec.from_env(args.mesh)
        gpu = parse_bytes(args.gpu_memory)
        device_plan(cfg, args.quantization, mesh, batch=args.batch, max_len=args.seq_len)
        host_read_bytes(cfg, mesh, args.hosts, 0)
    except ValueError as err:
        print(f"grok-worker plan: {err}", file=sys.stderr)
        return 2
    flag = f"--xla_force_host_platform_device_count={mesh.size}"
    if "jax" in sys.modules and os.environ.get("XLA_FLAGS") != flag:
        # JAX is loaded with another device count: compile in a fresh process.
        env = dict(os.environ, XLA_FLAGS=flag, JAX_PLATFORMS="cpu")
        cmd = [sys.executable, "-m", "grok_worker", "plan", *_argv(args)]
        return subprocess.run(cmd, env=env, check=False).returncode
    os.environ["XLA_FLAGS"] = flag
    os.environ["JAX_PLATFORMS"] = "cpu"
    from grok_worker.plan_report import Shape, report

    quantization: Quantization = args.quantization
    shape = Shape(args.hosts, args.batch, args.seq_len, args.prefill_len or args.seq_len, gpu)
    print(report(cfg, quantization, mesh, shape))
    return 0


def _argv(args: argparse.Namespace) -> list[str]:
    names = (
        "preset",
        "dims",
        "mesh",
        "hosts",
        "batch",
        "seq_len",
        "prefill_len",
        "quantization",
        "gpu_memory",
    )
    return [f"--{n.replace('_', '-')}={getattr(args, n)}" for n in names]
