"""`grok-worker plan`: the report a user reads before renting GPUs, and its errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from grok_worker.cli import main
from grok_worker.plan_cli import model_config, parse_bytes


def test_bad_arguments_name_the_flag_and_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--mesh", "model=three"]) == 2
    assert "model=8" in capsys.readouterr().err
    assert main(["plan", "--gpu-memory", "lots"]) == 2
    assert "--gpu-memory 'lots'" in capsys.readouterr().err
    assert main(["plan", "--dims", "n_layers=two"]) == 2
    assert "FIELD=INTEGER" in capsys.readouterr().err
    assert main(["plan", "--mesh", "model=8", "--hosts", "3"]) == 2
    assert "split evenly over the hosts" in capsys.readouterr().err


def test_quantities_and_dimension_overrides() -> None:
    assert parse_bytes("80Gi") == 80 * 2**30
    assert parse_bytes("141G") == 141 * 10**9
    assert model_config("grok-1", "n_layers=2,d_model=1024").n_layers == 2


@pytest.mark.slow
def test_the_report_of_a_two_host_tiny_topology() -> None:
    cmd = [sys.executable, "-m", "grok_worker", "plan", "--preset", "tiny", "--mesh", "expert=2,model=2"]
    cmd += ["--hosts", "2", "--batch", "2", "--seq-len", "64", "--gpu-memory", "1Gi"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300).stdout
    assert "model_kv 2 × model_q 1" in out
    assert "all-reduce f32[2,64] over 4 devices (crosses hosts)" in out
    assert "all-reduce f32[2,64] over 2 devices (inside a host)" in out
    assert "int8 weights in any collective: 0" in out
    assert out.rstrip().endswith("FITS")
