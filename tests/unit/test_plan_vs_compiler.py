"""The sharding plan against the compiler: what the operator and `grok-worker plan` assume is what
XLA builds.

For every example GrokDeployment (through the operator's own validation, so its default mesh too)
and a matrix of meshes at Grok-1's full width, a subprocess with 16 fake CPU devices compiles the
decode step (batch 8 × 8192 positions; examples: their own serving shape) at 1 and 2 layers with
abstract weights, and a 256-token prefill at 1 layer. Checked per mesh:
- no int8 weight in any collective, and no all-gather or all-to-all at all (only activations are
  summed across devices);
- the plan's per-device weights + KV cache (64 layers) within 10 % of XLA's argument bytes scaled
  from the 1- and 2-layer compiles (they agree to the byte: the plan builds the shardings);
- the KV cache each device holds equals the plan's, on the compiled program's output shardings.
Cost: about 3–4 minutes on 2 cores (one process, 2 decode + 1 prefill compiles per mesh).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from grok_worker.contract import MeshSpec
from grok_worker.model_config import PRESETS
from grok_worker.shard_plan import device_plan

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DEVICES = 16
#: (data, expert, model): 1–16 devices; expert 1/2/8; model 1–16; data 1/2.
MATRIX = [
    (1, 1, 1),
    (1, 1, 4),
    (1, 1, 16),
    (1, 2, 1),
    (1, 8, 1),
    (1, 2, 8),
    (1, 8, 2),
    (2, 1, 8),
    (2, 2, 4),
    (2, 8, 1),
]


def _example_cases() -> list[dict[str, Any]]:
    """preset, quantization, mesh, batch and length of every example, as the operator validates it."""
    from grok_operator.validation import ValidSpec, validate

    cases = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        doc = next(d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "GrokDeployment")
        valid = validate(doc["spec"], name=doc["metadata"]["name"])
        assert isinstance(valid, ValidSpec), f"{path.name}: {valid}"
        cases.append(
            {
                "name": path.name,
                "preset": valid.spec.model.preset,
                "quantization": valid.spec.model.quantization,
                "mesh": valid.mesh.to_env(),
                "batch": valid.spec.serving.max_batch,
                "seq": valid.max_seq_len,
            }
        )
    return cases


def _cases() -> list[dict[str, Any]]:
    matrix = [
        {"name": f"grok-1 {d}x{e}x{m}", "preset": "grok-1", "quantization": "int8", "batch": 8, "seq": 8192}
        | {"mesh": MeshSpec(data=d, expert=e, model=m).to_env()}
        for d, e, m in MATRIX
    ]
    return _example_cases() + matrix


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("plan") / "compiled.json"
    cases = tmp_path_factory.mktemp("plan") / "cases.json"
    cases.write_text(json.dumps(_cases()))
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES}", JAX_PLATFORMS="cpu")
    subprocess.run([sys.executable, __file__, str(cases), str(out)], env=env, check=True, timeout=1500)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _plan(case: dict[str, Any], layers: int) -> tuple[int, int]:
    cfg = PRESETS[case["preset"]].with_overrides(n_layers=layers)
    p = device_plan(
        cfg, case["quantization"], MeshSpec.from_env(case["mesh"]), batch=case["batch"], max_len=case["seq"]
    )
    return p.weights_bytes, p.kv_cache_bytes


@pytest.mark.slow
def test_no_weight_crosses_devices_in_prefill_or_decode(compiled: dict[str, Any]) -> None:
    for case in _cases():
        for step in ("decode", "prefill"):
            ops = compiled[case["name"]][step]["collectives"]
            assert not [op for op in ops if "s8" in op["dtypes"]], f"{case['name']} {step}: int8 moved: {ops}"
            kinds = {op["kind"] for op in ops}
            assert kinds <= {"all-reduce"}, (
                f"{case['name']} {step}: {kinds} (only sums of activations expected)"
            )


@pytest.mark.slow
def test_plan_per_device_bytes_match_the_compilers_memory_analysis_at_full_depth(
    compiled: dict[str, Any],
) -> None:
    for case in _cases():
        layers = PRESETS[case["preset"]].n_layers
        weights, kv = _plan(case, layers)
        scaled = compiled[case["name"]]["decode"]["scaled_argument_bytes"][str(layers)]
        tokens = 2 * case["batch"] * 4  # the step's token and position inputs
        assert abs(weights + kv + tokens - scaled) <= 0.10 * scaled, (case["name"], weights + kv, scaled)


@pytest.mark.slow
def test_each_device_holds_exactly_the_plans_kv_cache(compiled: dict[str, Any]) -> None:
    for case in _cases():
        _, kv = _plan(case, 2)
        assert compiled[case["name"]]["decode"]["cache_shard_bytes"] == kv, case["name"]
    # Grok-1 on model=16 (8 KV heads): each device holds one KV head, an eighth of the whole cache.
    sixteen = compiled["grok-1 1x1x16"]["decode"]["cache_shard_bytes"]
    whole = compiled["grok-1 1x1x1"]["decode"]["cache_shard_bytes"]
    assert 8 * sixteen <= 1.01 * whole


def _compile_case(case: dict[str, Any]) -> dict[str, Any]:
    import jax

    from grok_worker.model.aot import compile_decode, compile_prefill, scale
    from grok_worker.model.sharding import make_mesh

    spec = MeshSpec.from_env(case["mesh"])
    full = PRESETS[case["preset"]]
    reports = []
    for layers in (1, 2):
        cfg = full.with_overrides(n_layers=layers)
        mesh = make_mesh(spec, jax.devices()[: spec.size], cfg=cfg)
        reports.append(compile_decode(cfg, case["quantization"], mesh, case["batch"], case["seq"]))
    cfg = full.with_overrides(n_layers=1)
    prefill = compile_prefill(
        cfg, case["quantization"], make_mesh(spec, jax.devices()[: spec.size], cfg=cfg), 256
    )
    scaled = scale(reports[0], reports[1], full.n_layers)

    def ops(report: Any) -> list[dict[str, Any]]:
        return [{"kind": c.kind, "dtypes": sorted(c.dtypes), "bytes": c.bytes} for c in report.collectives]

    return {
        "decode": {
            "collectives": ops(reports[1]),
            "cache_shard_bytes": reports[1].cache_shard_bytes,
            "scaled_argument_bytes": {str(full.n_layers): scaled.argument_bytes},
        },
        "prefill": {"collectives": ops(prefill)},
    }


if __name__ == "__main__":  # subprocess entry: compile every case on 16 fake devices
    cases_in = json.loads(Path(sys.argv[1]).read_text())
    Path(sys.argv[2]).write_text(json.dumps({c["name"]: _compile_case(c) for c in cases_in}))
