"""Helpers for the operator's integration tests (no tests here): a real operator running
in-process against the session's control plane, GrokDeployment manifests, and waiting.

The operator runs in a background thread (`grok_operator.runtime.OperatorThread`) with a short
resync interval; its `KubeApi` counts every write it makes, which the idle and restart tests read.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from grok_operator import constants as c
from grok_operator.runtime import OperatorConfig, OperatorThread

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "charts" / "grok-operator" / "crds" / "grokdeployments.serving.grok.dev.yaml"
T = TypeVar("T")

#: Every test GrokDeployment tolerates the kwok nodes' taint.
KWOK_TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}


def small(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """A GrokDeployment of the tiny preset on one GPU per host (cheap on the shared kwok nodes)."""
    spec.setdefault("model", {"preset": "tiny", "checkpoint": {"hostPath": {"path": "/models/tiny"}}})
    spec.setdefault("topology", {"hostsPerReplica": 2, "gpusPerHost": 1, "gpuMemory": "16Gi"})
    return manifest(name, namespace, **spec)


def one_host(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """`small` at one replica of one host with one GPU: the cheapest GrokDeployment there is."""
    spec.setdefault("replicas", 1)
    spec.setdefault("topology", {"hostsPerReplica": 1, "gpusPerHost": 1, "gpuMemory": "16Gi"})
    return small(name, namespace, **spec)


def manifest(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    """A GrokDeployment of the real grok-1 preset (kwok nodes never load it) with overrides."""
    body: dict[str, Any] = {
        "replicas": 2,
        "image": "example.invalid/grok-worker:test",
        "model": {"preset": "grok-1", "checkpoint": {"hostPath": {"path": "/models/grok-1"}}},
        "topology": {"hostsPerReplica": 2, "gpusPerHost": 8, "gpuMemory": "80Gi"},
        "tolerations": [KWOK_TOLERATION],
        "rollout": {"maxUnavailable": 1, "maxSurge": 0},
        "failurePolicy": {"backoffSeconds": 0},
    }
    for key, value in spec.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict):
            body[key] = {**body[key], **value}
        else:
            body[key] = value
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": copy.deepcopy(body),
    }


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.25) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except AssertionError as err:
            last = err
        else:
            if last:
                return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


class Kube:
    """kubectl-backed reads and writes for tests (independent of the operator's own client)."""

    def __init__(self, cluster: Any, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace

    def apply(self, obj: dict[str, Any]) -> None:
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        result = self.cluster.kubectl(
            "get", kind, name, "-n", self.namespace, "-o", "json", "--ignore-not-found", check=False
        )
        return json.loads(result.stdout) if result.stdout.strip() else None

    def items(self, kind: str, selector: str = "") -> list[dict[str, Any]]:
        args = ["get", kind, "-n", self.namespace, "-o", "json"]
        if selector:
            args += ["-l", selector]
        items: list[dict[str, Any]] = json.loads(self.cluster.kubectl(*args).stdout)["items"]
        return items

    def gd(self, name: str) -> dict[str, Any]:
        obj = self.get(c.PLURAL, name)
        assert obj is not None, f"GrokDeployment {name} is gone"
        return obj

    def condition(self, name: str, kind: str) -> dict[str, Any]:
        for cond in self.gd(name).get("status", {}).get("conditions", []):
            if cond["type"] == kind:
                return dict(cond)
        return {}

    def wait_reason(self, name: str, reason: str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait for `name`'s Ready condition to carry `reason`; that condition."""

        def ready() -> dict[str, Any] | None:
            condition = self.condition(name, "Ready")
            return condition if condition.get("reason") == reason else None

        return wait_for(f"{name}'s Ready condition to say {reason}", ready, timeout)

    def pods(self, name: str) -> list[dict[str, Any]]:
        return self.items("pods", f"{c.LABEL_DEPLOYMENT}={name}")

    def events(self, name: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.items("events")
            if e["involvedObject"].get("kind") == c.KIND and e["involvedObject"].get("name") == name
        ]

    def wait_ready(self, name: str, replicas: int, timeout: float = 90.0) -> dict[str, Any]:
        def ready() -> dict[str, Any] | str:
            gd = self.gd(name)
            status = gd.get("status", {})
            done = (
                status.get("phase") == "Ready"
                and status.get("readyReplicas") == replicas
                and status.get("replicas") == replicas
                and status.get("observedGeneration") == gd["metadata"]["generation"]
            )
            return gd if done else ""  # falsy, but shows the status when the wait times out

        def ready_or_status() -> dict[str, Any] | None:
            result = ready()
            if isinstance(result, dict):
                return result
            raise AssertionError(json.dumps(self.gd(name).get("status", {}))[:2000])

        return wait_for(f"{name} Ready with {replicas} replica groups", ready_or_status, timeout)


def install_crd(cluster: Any) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    cluster.wait_crds_established([c.CRD_NAME])

    def discoverable() -> bool:
        # kopf resolves resources through discovery once at start-up (then only on CRD events):
        # an operator started before discovery serves the new kind would never watch it.
        result = cluster.kubectl("get", "--raw", f"/apis/{c.API_VERSION}", check=False)
        return result.returncode == 0 and f'"name":"{c.PLURAL}"' in result.stdout

    wait_for(f"{c.PLURAL} to be served by discovery", discoverable, 60)


def start_operator(cluster: Any, **overrides: Any) -> OperatorThread:
    config = OperatorConfig(
        kubeconfig=cluster.kubeconfig,
        all_namespaces=True,
        resync_seconds=overrides.pop("resync_seconds", 2.0),
        **overrides,
    )
    return OperatorThread(config).start()


def operator_fixture(cluster: Any) -> Iterator[OperatorThread]:
    install_crd(cluster)
    operator = start_operator(cluster)
    try:
        yield operator
    finally:
        operator.stop()


def start_operator_process(
    cluster: Any, namespace: str, liveness: str = "", metrics: str = ""
) -> subprocess.Popen[str]:
    """`python -m grok_operator run` as users start it, for one namespace, with JSON logs on its
    stderr (a pipe, unbuffered); `liveness` is its --liveness URL and `metrics` its
    --metrics-address ('' for none)."""
    argv = [
        sys.executable,
        "-m",
        "grok_operator",
        "run",
        f"--namespace={namespace}",
        "--standalone",
        "--log-format=json",
        "--log-level=INFO",
        f"--liveness={liveness}",
        f"--metrics-address={metrics}",
        f"--kubeconfig={cluster.kubeconfig}",
    ]
    return subprocess.Popen(
        argv, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
