"""`grok-operator run` as users start it: a separate process with JSON logs, a liveness endpoint and
its /metrics and /readyz port, serving a GrokDeployment until SIGTERM, then exiting cleanly. The
metrics are scraped over the socket and parsed with Prometheus' own parser: they must agree with
what the process did (the object Ready, its children applied, its namespace's watches listed)."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_operator_support import Kube, install_crd, small, start_operator_process, wait_for

from grok_devcluster.demo import free_port

pytestmark = pytest.mark.cluster

READY = frozenset({("phase", "Ready")})
APPLIED_STATEFULSETS = frozenset({("verb", "apply"), ("kind", "StatefulSet")})


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_operator_process_serves_until_sigterm_with_json_logs(cluster: Any, namespace: str) -> None:
    install_crd(cluster)
    port, metrics_port = free_port(), free_port()
    proc = start_operator_process(
        cluster, namespace, f"http://127.0.0.1:{port}/healthz", f"127.0.0.1:{metrics_port}"
    )
    urls = (f"http://127.0.0.1:{port}/healthz", f"http://127.0.0.1:{metrics_port}/readyz")
    try:
        wait_for("/healthz and /readyz", lambda: proc.poll() is None and all(map(_answers, urls)), 60)
        kube = Kube(cluster, namespace)
        kube.apply(small("proc", namespace, replicas=1))
        kube.wait_ready("proc", 1)
        scraped = wait_for(
            "the Ready phase in /metrics",
            lambda: (m := _scrape(metrics_port))[("grok_operator_grokdeployments", READY)] == 1 and m,
            30,
        )
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
    assert scraped[("grok_operator_reconcile_passes_total", frozenset({("result", "ok")}))] >= 1
    assert scraped[("grok_operator_api_writes_total", APPLIED_STATEFULSETS)] >= 1
    for kind in ("Pod", "StatefulSet", "Service", "ConfigMap", "NetworkPolicy"):
        watch = frozenset({("kind", kind), ("scope", namespace)})
        assert scraped[("grok_operator_child_watch_listed", watch)] == 1, kind
        assert scraped[("grok_operator_child_watch_failing", watch)] == 0, kind
