"""Grok-1 layers on one GPU: decode step time and bandwidth (`bash bench/gpu.sh` on an H200).

What it measures, all in one process:
- the GPU's copy bandwidth: a jitted elementwise pass over a 4 GiB buffer (reads and writes it
  once; bytes counted read + write, as in `bench.membw`);
- the `grok-1` preset at full width with `--layers` of its 64 layers (default 8, about 41 GB in
  int8), random weights drawn on the device with the model's own `init_params`;
- the model's jitted decode step at batch 1, 8 and 32 (a 1024-slot cache, 512 tokens of context):
  median step time, tokens/s, and at batch 1 the active-weight bytes streamed per second ÷ the copy
  bandwidth (goal >= 0.6);
- the tokens/s this implies for all 64 layers on 8 such GPUs (each reading 1/8 of the weights, no
  communication cost: an upper bound), next to published batch-1 figures: 1.8 tokens/s for the
  release's code on 8×H800 and 73 tokens/s for gpt-fast on 8×A100.
Results go to `--out DIR` as files (results.jsonl, table.txt, environment.txt) and to stdout.
`--toy` runs the same logic at a toy size on whatever JAX backend is present (CPU in CI).

Also runnable as `python -m bench gpu --size smoke` (the toy size) so the smoke test covers it.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp

from bench.options import Options
from bench.report import Figure, Result, emit, json_lines, table
from bench.timing import median, time_once
from grok_worker.model import KVCache, Params, decode_step_jit, get_preset, init_cache, init_params
from grok_worker.model_config import ModelConfig, grok_architecture

NAME = "gpu"
#: Published batch-1 decode speeds of Grok-1 (tokens/s) for the whole 64-layer model (GROK1.md).
RELEASE_8XH800 = 1.8
GPT_FAST_8XA100 = 73.0
FULL_LAYERS = 64
GPUS_IMPLIED = 8


@dataclass(frozen=True)
class Plan:
    cfg: ModelConfig
    batches: tuple[int, ...]
    max_len: int
    context: int
    copy_bytes: int
    steps: int


def plan(toy: bool, layers: int) -> Plan:
    if toy:
        cfg = grok_architecture(
            "grok-1-toy", vocab_size=1024, d_model=256, n_layers=2, n_q_heads=4, n_kv_heads=2, head_dim=64
        )
        return Plan(cfg, (1, 2), 64, 32, 16 << 20, 2)
    cfg = get_preset("grok-1").with_overrides(n_layers=layers)
    return Plan(cfg, (1, 8, 32), 1024, 512, 4 << 30, 20)


def copy_bandwidth(size: int, repeats: int) -> float:
    """Bytes/s (read + write) of a jitted elementwise pass over a `size`-byte buffer on the device."""
    x = jnp.zeros((size,), jnp.uint8)
    bump = jax.jit(lambda a: a + jnp.uint8(1))
    bump(x).block_until_ready()
    return 2 * size / median([time_once(lambda: bump(x).block_until_ready()) for _ in range(max(3, repeats))])


def measure(p: Plan, checkpoint: Callable[[Result], None] | None = None) -> Result:
    """Run the plan; `checkpoint(result)` is called after each step of it, so a run cut short by
    its time limit still leaves the figures measured so far."""
    cfg = p.cfg
    result = Result(NAME)
    save = checkpoint or (lambda _: None)
    copy_bw = copy_bandwidth(p.copy_bytes, p.steps)
    active = cfg.active_param_bytes("int8")
    result.note("copy bandwidth", f"{copy_bw / 1e12:.3f} TB/s (read+write) over {p.copy_bytes >> 20} MiB")
    result.note(
        "model",
        f"{cfg.name}: {cfg.n_layers} of 64 layers, d_model {cfg.d_model}, int8, weights "
        f"{cfg.param_bytes('int8') / 1e9:.1f} GB, active per token {active / 1e9:.2f} GB; cache {p.max_len} "
        f"slots, context {p.context}; median of {p.steps} steps",
    )
    result.note(
        "implied",
        f"64 layers on {GPUS_IMPLIED} GPUs = step x {FULL_LAYERS}/{cfg.n_layers} / {GPUS_IMPLIED}, no communication "
        "(upper bound); published batch-1: release 8xH800 1.8 tokens/s, gpt-fast 8xA100 73 tokens/s",
    )
    save(result)
    params = init_params(cfg, jax.random.key(0), "int8")
    jax.block_until_ready(params)  # type: ignore[no-untyped-call]
    for batch in p.batches:
        step_s = decode_step_seconds(p, params, batch)
        result.add(Figure(NAME, f"decode_step_{cfg.name}_{cfg.n_layers}L_b{batch}", step_s, "s"))
        result.add(
            Figure(NAME, f"tokens_per_s_{cfg.name}_{cfg.n_layers}L_b{batch}", batch / step_s, "tokens/s")
        )
        if batch == 1:
            result.add(
                Figure(
                    NAME,
                    f"weight_bytes_per_s_{cfg.name}_{cfg.n_layers}L_b1",
                    active / step_s,
                    "B/s",
                    baseline=copy_bw,
                    goal=">=0.6",
                    limited_by="not yet analysed on a GPU",
                )
            )
            implied = 1.0 / (step_s * (FULL_LAYERS / cfg.n_layers) / GPUS_IMPLIED)
            figure = f"implied_tokens_per_s_64L_{GPUS_IMPLIED}gpu_b1"
            result.add(
                Figure(NAME, f"{figure}_vs_release_8xH800", implied, "tokens/s", baseline=RELEASE_8XH800)
            )
            result.add(
                Figure(NAME, f"{figure}_vs_gpt_fast_8xA100", implied, "tokens/s", baseline=GPT_FAST_8XA100)
            )
        save(result)
    return result


def decode_step_seconds(p: Plan, params: Params, batch: int) -> float:
    """Median time of the model's jitted decode step at `batch` (cache donated and threaded)."""
    cfg = p.cfg
    cache = init_cache(cfg, batch, p.max_len)
    tokens = jnp.full((batch,), 7, jnp.int32)  # [B]
    positions = jnp.full((batch,), p.context, jnp.int32)  # [B]
    step = decode_step_jit.lower(params, cfg, cache, tokens, positions).compile()
    state: dict[str, KVCache] = {"cache": cache}

    def once() -> None:
        logits, state["cache"] = step(params, state["cache"], tokens, positions)
        logits.block_until_ready()

    once()
    return median([time_once(once) for _ in range(p.steps)])


def environment() -> str:
    lines = [
        f"python {platform.python_version()} ({sys.executable})",
        f"jax {jax.__version__}, backend {jax.default_backend()}",
        *(f"device {d.id}: {d.device_kind}" for d in jax.devices()),
    ]
    return "\n".join(lines) + "\n"


def write_outputs(result: Result, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.jsonl").write_text("".join(line + "\n" for line in json_lines([result])))
    (out / "table.txt").write_text(table([result]) + "\n")
    (out / "environment.txt").write_text(environment())


def run(options: Options) -> Result:
    """`python -m bench gpu`: the toy size under --size smoke, else the full size (needs a GPU)."""
    if not options.smoke and jax.default_backend() != "gpu":
        raise RuntimeError(
            "the gpu benchmark needs a GPU at full size; use --size smoke for the toy size on CPU"
        )
    return measure(plan(toy=options.smoke, layers=8))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n")[0])
    ap.add_argument(
        "--out", type=Path, required=True, help="folder for results.jsonl, table.txt, environment.txt"
    )
    ap.add_argument("--layers", type=int, default=8, help="grok-1 layers to instantiate (of 64)")
    ap.add_argument("--toy", action="store_true", help="toy size, any backend (tests the logic on CPU)")
    args = ap.parse_args(argv)
    if not args.toy and jax.default_backend() != "gpu":
        print(f"no GPU (JAX backend is {jax.default_backend()}); use --toy on CPU", file=sys.stderr)
        return 2
    print(environment(), file=sys.stderr, end="")
    result = measure(plan(args.toy, args.layers), checkpoint=lambda partial: write_outputs(partial, args.out))
    write_outputs(result, args.out)
    emit([result], sys.stdout)
    print(json.dumps({"written": str(args.out)}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
