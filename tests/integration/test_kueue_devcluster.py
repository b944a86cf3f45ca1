"""`grok-devcluster up --kueue`: the local cluster starts the real Kueue on request, as a loopback
process recorded with the others (so `down` stops it), its CRDs installed and its webhooks
registered by URL; a pod in a managed namespace is gated by Kueue's webhook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from grok_devcluster.handle import ClusterHandle
from grok_devcluster.kueue import WEBHOOK_CONFIGURATION_NAMES, label_namespace_managed
from grok_devcluster.nodes import KWOK_TOLERATION
from grok_devcluster.process import is_running
from grok_devcluster.state import load_state

pytestmark = pytest.mark.cluster


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "grok_devcluster.cli", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)


def test_up_with_kueue_runs_kueue_gating_managed_pods_and_down_stops_it() -> None:
    name = f"kueuetest-{os.getpid()}"
    up = cli("up", "--name", name, "--nodes", "1", "--kueue")
    state = load_state(name)
    try:
        assert up.returncode == 0, up.stderr
        assert state is not None
        assert "kueue" in [p.name for p in state.processes]
        assert "kueue ready" in state.milestones
        handle = ClusterHandle.from_kubeconfig(
            state.kubeconfig, kubectl_binary=state.kubectl, helm_binary=state.helm
        )
        handle.kubectl("get", "crd", "workloads.kueue.x-k8s.io", "clusterqueues.kueue.x-k8s.io")
        for kind, config_name in WEBHOOK_CONFIGURATION_NAMES.items():
            config = json.loads(handle.kubectl("get", kind.lower(), config_name, "-o", "json").stdout)
            assert all(h["clientConfig"]["url"].startswith("https://127.0.0.1:") for h in config["webhooks"])
        handle.kubectl("create", "namespace", "queued")
        label_namespace_managed(handle, "queued")
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": "queued", "labels": {"kueue.x-k8s.io/queue-name": "none"}},
            "spec": {"containers": [{"name": "c", "image": "x"}], "tolerations": [KWOK_TOLERATION]},
        }
        handle.kubectl("apply", "-f", "-", input=json.dumps(pod))
        gates = json.loads(handle.kubectl("get", "pod", "p", "-n", "queued", "-o", "json").stdout)["spec"]
        assert {"name": "kueue.x-k8s.io/admission"} in gates.get("schedulingGates", [])
        handle.close()
    finally:
        down = cli("down", "--name", name)
    assert down.returncode == 0, down.stderr
    assert not [p.name for p in state.processes if is_running(p)], "processes survived `down`"
    assert not Path(state.root).exists()
