"""Figure 1: batch-1 decode against this machine's memory bandwidth (`python -m bench decode`).

A batch-1 decode step must read every active weight once (attention, the router's two chosen
experts, norms and the tied embedding for the logits), so its ceiling is the memory bandwidth.
This benchmark times the model's own jitted `decode_step` on the `small` preset with int8 weights
at batch 1 (a 256-slot cache, 128 tokens of context), interleaved with numpy copies of a 512 MiB
buffer in the same process (`bench.membw`), and reports:

- weight bytes streamed per second (active-weight bytes ÷ median step time) ÷ copy bandwidth,
  goal >= 0.6;
- bytes read per token (XLA's cost analysis of the compiled step) ÷ active-weight bytes, goal ≈ 1:
  only the selected experts are read.
To say what limits them, it also times one expert matrix through the model's int8 `linear` against
the same matrix as a float32 matmul (how fast this CPU's kernels stream each storage type), and
names the largest float32 temporary in the compiled step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from bench.membw import CopyBandwidth
from bench.options import Options
from bench.report import Figure, Result
from bench.timing import interleaved, median
from bench.weights import device_params
from bench.xla_cost import largest_float32_temporary, xla_bytes
from grok_worker.model import QuantizedWeight, decode_step_jit, dequantize, get_preset, init_cache
from grok_worker.model.layers import linear

NAME = "decode"


def matmul_rates(weight: QuantizedWeight, repeats: int) -> tuple[float, float]:
    """Weight bytes/s of one batch-1 matmul through the model's own int8 `linear`, and of the same
    matrix as a plain float32 matmul (4x the bytes), alternated: how fast this CPU's kernels stream
    each storage type, independent of the rest of the step."""
    x = jnp.ones((1, weight.weight.shape[0]), jnp.bfloat16)  # [B=1, In]
    dense = dequantize(weight).astype(jnp.float32)  # [In, Out]
    int8_fn = jax.jit(linear)
    f32_fn = jax.jit(lambda x, w: x.astype(jnp.float32) @ w)
    samples = interleaved(
        {
            "int8": lambda: int8_fn(x, weight).block_until_ready(),
            "f32": lambda: f32_fn(x, dense).block_until_ready(),
        },
        repeats=repeats,
        warmup=1,
    )
    int8_bytes = weight.weight.nbytes + weight.scales.nbytes
    return int8_bytes / median(samples["int8"]), dense.nbytes / median(samples["f32"])


def run(options: Options) -> Result:
    cfg = get_preset("tiny" if options.smoke else "small")
    max_len, context = (64, 32) if options.smoke else (256, 128)
    copy_bytes = (16 << 20) if options.smoke else (512 << 20)
    repeats = options.repeats(full=15, smoke=2)

    params = device_params(cfg, "int8")
    cache = init_cache(cfg, 1, max_len)
    tokens = jnp.array([7], jnp.int32)  # [B=1]
    positions = jnp.array([context], jnp.int32)  # [B=1]
    compiled = decode_step_jit.lower(params, cfg, cache, tokens, positions).compile()
    cost = xla_bytes(compiled)
    active = cfg.active_param_bytes("int8")

    state = {"cache": cache}

    def step() -> None:
        logits, state["cache"] = compiled(params, state["cache"], tokens, positions)
        logits.block_until_ready()

    with CopyBandwidth(copy_bytes) as copier:
        samples = interleaved({"step": step, "copy": copier.once}, repeats=repeats, warmup=2)
        copy_bw = copier.bytes_moved / median(samples["copy"])
        threads = copier.threads
    step_s = median(samples["step"])
    expert = jax.tree.map(lambda a: a[0], params.layers[0]["w_gate"])  # one expert's [D, F] matrix
    assert isinstance(expert, QuantizedWeight)
    int8_rate, f32_rate = matmul_rates(expert, repeats)

    # What a batch-1 step must write: its K/V entries and the logits; anything far beyond that is
    # a materialised copy (e.g. a weight widened or transposed before a dot).
    needed_writes = cfg.kv_bytes_per_token + 4 * cfg.vocab_size
    largest = largest_float32_temporary(compiled)
    kernels = (
        f"on this CPU the model's int8 matmul streams {int8_rate / 1e9:.2f} GB/s of int8 weight bytes "
        f"where a float32 matmul of the same matrix streams {f32_rate / 1e9:.2f} GB/s"
    )
    copies = (
        f"XLA's cost analysis says the compiled step writes {cost.written / 1e6:.0f} MB per token where "
        f"{needed_writes / 1e3:.0f} kB (K/V and logits) are needed, and reads {cost.read / 1e6:.0f} MB "
        f"against {active / 1e6:.0f} MB of active weights: it materialises copies"
        + (f", the largest {largest[0] / 1e6:.0f} MB, {largest[1]}" if largest is not None else "")
    )
    many_copies = cost.written > 10 * needed_writes
    if int8_rate < 0.25 * copy_bw:  # copy_bw counts read + write: its read side is half
        why_bandwidth = f"{kernels}: widening int8 inside XLA's CPU dot, not memory, sets the pace"
    else:
        why_bandwidth = copies if many_copies else f"{kernels}; no large copies per XLA's cost analysis"
    why_bytes = copies if many_copies else "no large copies per XLA's cost analysis; not analysed further"
    result = Result(NAME)
    result.add(
        Figure(
            NAME,
            f"weight_bytes_per_s_{cfg.name}_int8_b1",
            active / step_s,
            "B/s",
            baseline=copy_bw,
            goal=">=0.6",
            limited_by=why_bandwidth,
        )
    )
    result.add(
        Figure(
            NAME,
            f"bytes_read_per_token_{cfg.name}_int8_b1",
            cost.read,
            "B",
            baseline=float(active),
            goal="~=1",
            limited_by=why_bytes,
        )
    )
    result.note("decode step", f"{step_s * 1e3:.1f} ms median of {repeats} ({1 / step_s:.2f} tokens/s)")
    result.note(
        "memory copy",
        f"{copy_bw / 1e9:.2f} GB/s (read+write) over {copy_bytes >> 20} MiB in {threads} threads",
    )
    result.note(
        "bytes per token",
        f"active weights {active / 1e6:.1f} MB of {cfg.param_bytes('int8') / 1e6:.1f} MB; "
        f"XLA reads {cost.read / 1e6:.1f} MB and writes {cost.written / 1e6:.1f} MB per step "
        "(XLA's cost analysis counts a loop body once: a MoE that loops over its selected experts is "
        "counted for one of them)",
    )
    result.note("int8 matmul", f"{kernels} (one expert matrix, batch 1)")
    if largest is not None:
        result.note("largest float32 temporary", f"{largest[0] / 1e6:.0f} MB, {largest[1]}")
    result.note("devices", f"{jax.device_count()} x {jax.devices()[0].platform}")
    return result
