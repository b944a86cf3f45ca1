"""Start-up failures are reported with the failing process's log and leave nothing behind; stale
records of dead clusters are pruned. Uses stand-in scripts for the binaries, so it runs anywhere.
"""

from __future__ import annotations

import io
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from grok_devcluster.binaries import ALL_BINARIES
from grok_devcluster.cluster import (
    ClusterError,
    ClusterOptions,
    _stop_tiers,
    prune_stale_clusters,
    start_cluster,
)
from grok_devcluster.layout import Ports
from grok_devcluster.paths import all_run_state_dirs
from grok_devcluster.process import ProcessRecord, is_running, process_start_time
from grok_devcluster.state import RunState, load_state, save_state


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _binaries(tmp_path: Path, etcd_script: str) -> dict[str, Path]:
    folder = tmp_path / "bin"
    folder.mkdir()
    binaries = {}
    for name in ALL_BINARIES:
        path = folder / name
        path.write_text("#!/bin/sh\n" + (etcd_script if name == "etcd" else "exec sleep 60\n"))
        path.chmod(0o755)
        binaries[name] = path
    return binaries


def _run_folders(name: str) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"grok-devcluster-{name}-*"))


def test_a_process_that_exits_at_start_is_named_with_its_log(tmp_path: Path) -> None:
    binaries = _binaries(tmp_path, 'echo "etcd: cannot listen: address in use" >&2\nexit 3\n')
    name = f"unit-exit-{os.getpid()}"
    with pytest.raises(ClusterError) as caught:
        start_cluster(ClusterOptions(name=name, gpu_nodes=1, timeout_s=20), binaries=binaries)
    message = str(caught.value)
    assert "etcd exited with code 3" in message
    assert "cannot listen: address in use" in message
    assert load_state(name) is None
    assert _run_folders(name) == []


def test_a_process_that_never_gets_healthy_times_out_and_is_stopped(tmp_path: Path) -> None:
    binaries = _binaries(tmp_path, "exec sleep 60\n")
    name = f"unit-hang-{os.getpid()}"
    with pytest.raises(
        ClusterError, match=r"etcd to answer http://127\.0\.0\.1:\d+/health did not happen within"
    ):
        start_cluster(ClusterOptions(name=name, gpu_nodes=1, timeout_s=1.5), binaries=binaries)
    assert load_state(name) is None
    assert _run_folders(name) == []


def _state(name: str, root: Path, owner: ProcessRecord | None, processes: list[ProcessRecord]) -> RunState:
    return RunState(
        name=name,
        root=str(root),
        server="https://127.0.0.1:1",
        kubeconfig=str(root / "admin.kubeconfig"),
        kubectl="kubectl",
        helm="helm",
        ports=Ports(1, 2, 3, 4, 5),
        processes=processes,
        owner=owner,
    )


def test_only_clusters_whose_starter_and_processes_are_all_gone_are_pruned(tmp_path: Path) -> None:
    dead = ProcessRecord("etcd", 999_999_999, 1, "")  # no such pid
    me = ProcessRecord("owner", os.getpid(), None, "")
    for name, owner, processes in (
        ("killed-pytest", dead, [dead]),
        ("starting-now", me, []),
        ("detached-up", dead, [me]),
    ):
        root = tmp_path / name
        root.mkdir()
        save_state(_state(name, root, owner, processes))
    assert prune_stale_clusters() == ["killed-pytest"]
    assert not (tmp_path / "killed-pytest").exists()
    assert [p.name for p in all_run_state_dirs()] == ["detached-up", "starting-now"]
    assert is_running(me)


def test_api_clients_stop_before_the_apiserver_and_etcd_last() -> None:
    started = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]
    records = [ProcessRecord(name, pid, None, "") for pid, name in enumerate(started)]
    tiers = [[r.name for r in tier] for tier in _stop_tiers(records)]
    assert tiers == [["kube-controller-manager", "kube-scheduler", "kwok"], ["kube-apiserver"], ["etcd"]]


def test_a_name_another_process_is_starting_is_refused(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        other = ProcessRecord("owner", sleeper.pid, process_start_time(sleeper.pid), "")
        root = tmp_path / "run"
        root.mkdir()
        save_state(_state("busy", root, other, []))
        with pytest.raises(ClusterError, match=f"being started by process {sleeper.pid}"):
            start_cluster(ClusterOptions(name="busy"), binaries=_binaries(tmp_path, "exit 1\n"))
        assert root.exists()
        assert load_state("busy") is not None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_port_taken_during_start_up_is_retried_with_fresh_ports(tmp_path: Path) -> None:
    binaries = _binaries(
        tmp_path, 'echo "listen tcp 127.0.0.1:2379: bind: address already in use" >&2\nexit 1\n'
    )
    progress = io.StringIO()
    with pytest.raises(ClusterError, match="address already in use"):
        start_cluster(ClusterOptions(name="racy", timeout_s=20), binaries=binaries, progress=progress)
    assert progress.getvalue().count("a port was taken during start-up, retrying (etcd)") == 2
    assert load_state("racy") is None
