"""`grok-operator run` as users start it: a separate process with JSON logs and a liveness endpoint,
serving a GrokDeployment until SIGTERM, then exiting cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from typing import Any

import pytest
from test_operator_support import Kube, install_crd, small, start_operator_process, wait_for

from grok_devcluster.demo import free_port

pytestmark = pytest.mark.cluster


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_the_operator_process_serves_until_sigterm_with_json_logs(cluster: Any, namespace: str) -> None:
    install_crd(cluster)
    port = free_port()
    proc = start_operator_process(cluster, namespace, f"http://127.0.0.1:{port}/healthz")
    try:
        wait_for("the liveness endpoint", lambda: proc.poll() is None and _healthy(port), 60)
        kube = Kube(cluster, namespace)
        kube.apply(small("proc", namespace, replicas=1))
        kube.wait_ready("proc", 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
    assert proc.returncode == 0, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "the operator logged nothing"
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any("reconciled: phase" in e["message"] for e in entries), entries[-5:]
    assert {"time", "level", "logger", "message"} <= set(entries[0])
