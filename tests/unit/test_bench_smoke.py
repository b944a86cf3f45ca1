"""The benchmarks run: each one at its tiny "smoke" size, plus the report format they share.

Benchmarks are not tests: nothing here checks a speed or a goal, only that every benchmark runs
end to end against the real parts (model, checkpoint files, worker processes over gRPC, the
control plane) and prints its table and one well-formed JSON line per figure, as
`python -m bench` documents. The smoke runs are marked (`slow`; the operator one needs the
control plane, `cluster`); the report tests are fast.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

# `bench` is a top-level folder of the repository (not an installed package); pytest's
# `pythonpath` setting puts the repository root on sys.path.
from bench.__main__ import expand
from bench.grpc_load import Trace, steady_rate
from bench.operator_apply import parse_write_counts
from bench.options import Options
from bench.registry import BENCHMARKS, quick_set
from bench.report import Figure, Result, json_lines, table
from bench.timing import interleaved, percentile

REPO = Path(__file__).resolve().parents[2]

JSON_KEYS = ["bench", "figure", "value", "unit", "baseline", "ratio", "goal"]


def run_bench(names: list[str], workdir: Path, timeout: float = 900) -> list[dict[str, object]]:
    json_out = workdir / "figures.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            *names,
            "--size",
            "smoke",
            "--workdir",
            str(workdir),
            "--json-out",
            str(json_out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"python -m bench {' '.join(names)} failed:\n{proc.stderr[-4000:]}"
    lines = proc.stdout.strip().splitlines()
    figures = [json.loads(line) for line in lines if line.startswith("{")]
    assert figures, f"no JSON figure lines in:\n{proc.stdout}"
    assert lines[-len(figures) :] == [line for line in lines if line.startswith("{")], (
        "JSON lines must come last"
    )
    assert lines[0].split()[:3] == ["bench", "figure", "value"], "the human table must come first"
    assert [json.loads(line) for line in json_out.read_text().splitlines()] == figures
    for fig in figures:
        assert list(fig) == JSON_KEYS
        assert isinstance(fig["value"], float | int)
        assert math.isfinite(fig["value"])
        assert fig["value"] >= 0
        if fig["baseline"] is not None:
            assert isinstance(fig["baseline"], float | int)
            assert fig["baseline"] > 0
            assert fig["ratio"] == pytest.approx(fig["value"] / fig["baseline"], rel=1e-4)
        else:
            assert fig["ratio"] is None
    return figures


def by_bench(figures: list[dict[str, object]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for fig in figures:
        out.setdefault(str(fig["bench"]), []).append(str(fig["figure"]))
    return out


# ---- the benchmarks run --------------------------------------------------------------------------


@pytest.mark.slow
def test_quick_set_runs_at_smoke_size(tmp_path: Path) -> None:
    names = by_bench(run_bench(["quick"], tmp_path))
    assert names["decode"] == ["weight_bytes_per_s_tiny_int8_b1", "bytes_read_per_token_tiny_int8_b1"]
    assert names["moe"] == ["moe_step_time_tiny_int8_b1", "moe_step_time_tiny_int8_b8"]
    assert names["checkpoint"] == ["load_bytes_per_s_tiny_int8"]
    # the checkpoint the benchmark wrote is a release-format folder the loader accepted
    assert (
        sorted(p.name for p in (tmp_path / "ckpt-tiny-int8-seed0" / "ckpt-0").iterdir())[0]
        == "tensor00000_000"
    )


@pytest.mark.slow
def test_worker_process_benchmarks_run_at_smoke_size(tmp_path: Path) -> None:
    names = by_bench(run_bench(["startup", "serving"], tmp_path))
    assert names["startup"] == ["start_to_serving_tiny", "import_tiny", "load_tiny", "compile_tiny"]
    assert names["serving"][:3] == [
        "decode_tokens_per_s_8_streams_tiny",
        "tokens_per_s_8_streams_tiny",
        "grpc_per_token_time_tiny",
    ]
    assert {"ttft_p50_tiny", "ttft_p99_tiny", "itl_p50_tiny", "itl_p99_tiny"} <= set(names["serving"])


@pytest.mark.slow
def test_http_and_chunked_prefill_benchmarks_run_at_smoke_size(tmp_path: Path) -> None:
    names = by_bench(run_bench(["http", "chunked"], tmp_path))
    assert names["http"] == ["http_per_token_time_tiny", "grpc_per_token_time_tiny"]
    assert names["chunked"] == [
        "itl_p99_with_max_length_prompts_tiny",
        "itl_p99_with_max_length_prompts_unchunked_tiny",
    ]


@pytest.mark.slow
def test_gpu_benchmark_logic_runs_at_toy_size_and_writes_files(tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    proc = subprocess.run(
        ["bash", "bench/gpu.sh", "toy", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figures = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    names = [f["figure"] for f in figures]
    assert "weight_bytes_per_s_grok-1-toy_2L_b1" in names
    assert {f["baseline"] for f in figures if "implied" in str(f["figure"])} == {1.8, 73.0}
    assert "backend" in (out / "environment.txt").read_text()
    assert (out / "table.txt").read_text().startswith("bench")


@pytest.mark.slow
@pytest.mark.cluster
def test_operator_benchmark_runs_at_smoke_size(tmp_path: Path) -> None:
    names = by_bench(run_bench(["operator"], tmp_path))
    assert names["operator"] == [
        "apply_to_children_median",
        "apply_to_children_p99",
        "5_grokdeployments_to_ready",
        "idle_api_writes_per_minute",
    ]


@pytest.mark.slow
@pytest.mark.cluster
def test_fleet_benchmark_runs_at_smoke_size(tmp_path: Path) -> None:
    names = by_bench(run_bench(["fleet"], tmp_path))
    assert names["fleet"] == [
        "10_grokdeployments_to_ready",
        "idle_writes",
        "idle_child_lists_per_pass_list",
        "idle_operator_client_lists",
        "process_rss",
        "operator_rss_growth",
        "10_to_ready_vs_control_plane_alone",  # the floor: a second cluster, the children applied directly
    ]


@pytest.mark.slow
@pytest.mark.cluster
def test_apiserver_writes_benchmark_runs_at_smoke_size(tmp_path: Path) -> None:
    costs = {str(f["figure"]): f for f in run_bench(["apiserver_writes"], tmp_path)}
    assert list(costs) == [
        "configmap_create_cpu",
        "grokdeployment_create_cpu",
        "grokdeployment_finalizer_patch_cpu",
        "grokdeployment_status_patch_cpu",
        "grokdeployment_status_patch_again_cpu",
        "configmap_merge_patch_cpu",
    ]
    baseline = costs["configmap_create_cpu"]["value"]
    assert all(f["baseline"] == baseline for name, f in costs.items() if name.startswith("grok"))


# ---- the shared report format (fast) -------------------------------------------------------------


def test_figure_json_has_exactly_the_documented_keys_and_ratio() -> None:
    fig = Figure("decode", "bw", 6.0, "B/s", baseline=10.0, goal=">=0.6")
    assert json.loads(json_lines([Result("decode", [fig])])[0]) == {
        "bench": "decode",
        "figure": "bw",
        "value": 6.0,
        "unit": "B/s",
        "baseline": 10.0,
        "ratio": 0.6,
        "goal": ">=0.6",
    }
    assert fig.met is True


@pytest.mark.parametrize(
    ("goal", "value", "baseline", "met"),
    [
        (">=0.6", 5.9, 10.0, False),
        ("<=0.35", 3.0, 10.0, True),
        ("<=1.05", 1.1, 1.0, False),
        ("==0", 0.0, None, True),
        ("==0", 2.0, None, False),
        ("~=1", 1.2, 1.0, True),
        ("~=1", 3.0, 1.0, False),
        ("value<=1", 0.4, 0.02, True),  # the goal is on the value although there is a baseline
        ("value<=1", 1.4, 2.0, False),
    ],
)
def test_goal_is_checked_against_ratio_or_value(
    goal: str, value: float, baseline: float | None, met: bool
) -> None:
    assert Figure("b", "f", value, "u", baseline=baseline, goal=goal).met is met


def test_malformed_goal_is_refused_with_the_figure_named() -> None:
    with pytest.raises(ValueError, match="'bw'"):
        Figure("decode", "bw", 1.0, "B/s", goal="at least 0.6")


def test_json_never_carries_infinity_or_nan() -> None:
    fig = Figure("b", "f", 1.0, "s", baseline=0.0)
    line = json_lines([Result("b", [fig])])[0]
    assert json.loads(line)["ratio"] is None
    assert "Infinity" not in line
    assert "NaN" not in line


def test_table_lists_each_figure_and_says_why_a_goal_is_missed() -> None:
    res = Result(
        "moe", [Figure("moe", "step", 5.0, "s", baseline=10.0, goal="<=0.35", limited_by="float32 copies")]
    )
    res.note("batch 1", "ours 5 ms")
    text = table([res])
    assert "step" in text
    assert "NO" in text
    assert "[moe] batch 1: ours 5 ms" in text
    assert "step misses <=0.35: float32 copies" in text


def test_percentile_interpolates() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 100) == 5.0
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)


def test_interleaved_alternates_candidates() -> None:
    calls: list[str] = []
    samples = interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1
    )
    assert calls == ["a", "b", "a", "b", "a", "b", "a", "b"]
    assert [len(v) for v in samples.values()] == [3, 3]


def test_names_expand_to_known_benchmarks() -> None:
    assert expand(["quick"]) == quick_set() == ["decode", "moe", "checkpoint"]
    assert "gpu" not in expand(["all"])
    assert set(expand(["all"])) == set(BENCHMARKS) - {"gpu", "realdemo", "fleet"}
    assert expand(["moe", "quick"]) == ["moe", "decode", "checkpoint"]
    with pytest.raises(KeyError):
        expand(["nope"])


def test_unknown_benchmark_is_a_usage_error_that_lists_the_choices() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "nope"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "unknown benchmark 'nope'" in proc.stderr
    assert "decode" in proc.stderr


def test_steady_rate_counts_only_while_every_stream_decodes() -> None:
    # stream a decodes 0..10 (one token per second), stream b starts late (first token at 4)
    a = Trace(sent=-1.0, token_times=[float(t) for t in range(11)])
    b = Trace(sent=-1.0, token_times=[4.0, 5.0, 6.0, 7.0, 8.0])
    # window (4, 8]: a's tokens at 5..8 and b's at 5..8 -> 8 tokens in 4 s
    assert steady_rate([a, b]) == 2.0
    assert steady_rate([a]) == 1.0
    assert a.gaps == [1.0] * 10
    assert b.ttft == 5.0


def test_steady_rate_refuses_streams_that_never_overlap() -> None:
    early = Trace(sent=0.0, token_times=[1.0, 2.0])
    late = Trace(sent=0.0, token_times=[3.0, 4.0])
    with pytest.raises(ValueError, match="never all decoding at once"):
        steady_rate([early, late])


def test_apiserver_write_counts_keep_only_the_operators_kinds_and_write_verbs() -> None:
    text = "\n".join(
        [
            "# HELP apiserver_request_total Counter of apiserver requests",
            'apiserver_request_total{code="200",component="apiserver",group="serving.grok.dev",'
            'resource="grokdeployments",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 7',
            'apiserver_request_total{code="201",component="apiserver",group="apps",resource="statefulsets",'
            'scope="resource",subresource="",verb="APPLY",version="v1"} 3',
            'apiserver_request_total{code="200",component="apiserver",group="apps",resource="statefulsets",'
            'scope="resource",subresource="status",verb="PUT",version="v1"} 40',
            'apiserver_request_total{code="200",component="apiserver",group="",resource="configmaps",'
            'scope="namespace",subresource="",verb="LIST",version="v1"} 99',
            'apiserver_request_total{code="200",component="apiserver",group="coordination.k8s.io",'
            'resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 500',
            'apiserver_request_total{code="201",component="apiserver",group="",resource="events",'
            'scope="resource",subresource="",verb="POST",version="v1"} 1.2e+01',
        ]
    )
    assert parse_write_counts(text) == {"grokdeployments/status": 7, "statefulsets": 3, "events": 12}


def test_repeat_counts_scale_and_never_drop_below_one() -> None:
    assert Options().repeats(15) == 15
    assert Options(size="smoke").repeats(15, smoke=2) == 2
    assert Options(repeat_scale=0.5).repeats(15) == 8
    assert Options(repeat_scale=0.01).repeats(15) == 1


@pytest.mark.slow
def test_collectives_benchmark_runs_at_smoke_size(tmp_path: Path) -> None:
    figures = run_bench(["collectives"], tmp_path)
    names = by_bench(figures)["collectives"]
    assert names[:2] == [
        "bytes_sent_per_decode_step_tiny_model4_b2",
        "int8_bytes_in_collectives_tiny_model4_b2",
    ]
    assert all(f["value"] == 0 for f in figures if str(f["figure"]).startswith("int8_"))


@pytest.mark.slow
@pytest.mark.multiprocess
def test_host_reads_benchmark_runs_at_smoke_size(tmp_path: Path) -> None:
    figures = run_bench(["host_reads"], tmp_path)
    assert by_bench(figures)["host_reads"] == ["bytes_read_host0_tiny", "bytes_read_host1_tiny"]
    assert all(f["ratio"] == 1 for f in figures)
