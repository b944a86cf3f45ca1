"""Group restart policies against the real control plane (restart_policy.py).

kwok makes pods Ready at once, so a group that is still loading cannot be had on a kwok node.
This test adds a Node that no kubelet and no kwok manages (its own label and taint, so no other
test's pods land there): the scheduler binds the group's pods to it and nobody else writes their
status, so the test writes it through the status subresource, as a kubelet would: a container
restart while loading, then Ready, then a restart after that. The node's Ready heartbeat is
renewed by the test so the node lifecycle controller leaves the pods alone.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from test_operator_support import Kube, install_crd, small, start_operator, wait_for

from grok_devcluster.nodes import GpuNodeSpec, render_gpu_node
from grok_operator import constants as c
from grok_operator.restart_policy import ON_POD_RESTART

pytestmark = pytest.mark.cluster

LABEL = "grok.test/unmanaged"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def unmanaged_node(cluster: Any) -> Iterator[str]:
    name = f"unmanaged-{uuid.uuid4().hex[:8]}"
    node = render_gpu_node(name, GpuNodeSpec(gpus=8))
    node["metadata"]["annotations"].pop("kwok.x-k8s.io/node", None)
    node["metadata"]["labels"][LABEL] = name
    node["spec"]["taints"] = [{"key": LABEL, "value": name, "effect": "NoSchedule"}]
    node["status"]["conditions"] = [_ready_condition()]
    cluster.kubectl("create", "-f", "-", input=json.dumps(node))
    try:
        yield name
    finally:
        cluster.kubectl("delete", "node", name, "--ignore-not-found", "--wait=false", check=False)


def _ready_condition() -> dict[str, str]:
    now = _now()
    return {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "the test stands in for the kubelet",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }


class FakeKubelet:
    """Writes what a kubelet would into the status of the pods bound to the unmanaged node."""

    def __init__(self, cluster: Any, namespace: str, node: str) -> None:
        self.cluster, self.namespace, self.node = cluster, namespace, node

    def heartbeat(self) -> None:
        patch = {"status": {"conditions": [_ready_condition()]}}
        self.cluster.kubectl(
            "patch", "node", self.node, "--subresource=status", "--type=strategic", "-p", json.dumps(patch)
        )

    def reap(self) -> None:
        """Finish deleting terminating pods (a kubelet would once their containers stopped)."""
        pods = json.loads(self.cluster.kubectl("get", "pods", "-n", self.namespace, "-o", "json").stdout)
        for pod in pods["items"]:
            if pod["metadata"].get("deletionTimestamp"):
                self.cluster.kubectl(
                    "delete",
                    "pod",
                    pod["metadata"]["name"],
                    "-n",
                    self.namespace,
                    "--grace-period=0",
                    "--force",
                    "--ignore-not-found",
                    check=False,
                )

    def bound(self, kube: Kube, name: str) -> list[dict[str, Any]]:
        """The live pods of `name` once both are bound to the node (else [])."""
        self.reap()
        self.heartbeat()
        pods = [
            p
            for p in kube.pods(name)
            if p["spec"].get("nodeName") and not p["metadata"].get("deletionTimestamp")
        ]
        return pods if len(pods) == 2 else []

    def set_pod(self, pod: str, *, ready: bool, restarts: int) -> None:
        self.heartbeat()
        now = _now()
        state: dict[str, Any] = (
            {"running": {"startedAt": now}} if ready else {"waiting": {"reason": "CrashLoopBackOff"}}
        )
        status = {
            "phase": "Running",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now},
            ],
            "containerStatuses": [
                {
                    "name": "worker",
                    "ready": ready,
                    "restartCount": restarts,
                    "image": "example.invalid/grok-worker:test",
                    "imageID": "",
                    "started": ready,
                    "state": state,
                }
            ],
        }
        self.cluster.kubectl(
            "patch",
            "pod",
            pod,
            "-n",
            self.namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": status}),
        )


def _uids(kube: Kube, name: str) -> dict[str, str]:
    return {p["metadata"]["name"]: p["metadata"]["uid"] for p in kube.pods(name)}


def _recreations(kube: Kube, name: str) -> int:
    return sum(e.get("count", 1) for e in kube.events(name) if e["reason"] == c.EventReason.GROUP_RECREATED)


def test_restarts_while_loading_do_not_recreate_the_group_but_restarts_after_ready_do(
    cluster: Any, namespace: str, unmanaged_node: str
) -> None:
    install_crd(cluster)
    kube = Kube(cluster, namespace)
    kubelet = FakeKubelet(cluster, namespace, unmanaged_node)
    operator = start_operator(cluster, resync_seconds=0.5)
    try:
        kube.apply(
            small(
                "slow",
                namespace,
                replicas=1,
                nodeSelector={LABEL: unmanaged_node},
                tolerations=[{"operator": "Exists"}],
            )
        )
        pods = wait_for("both pods bound to the unmanaged node", lambda: kubelet.bound(kube, "slow"), 60)
        names = sorted(p["metadata"]["name"] for p in pods)
        uids = _uids(kube, "slow")

        # Loading, and the kubelet restarted a container (say its startup probe gave up): kept.
        for pod in names:
            kubelet.set_pod(pod, ready=False, restarts=1)
        passes = operator.state.passes
        wait_for("several passes over the restarted pods", lambda: operator.state.passes >= passes + 4, 30)
        assert _uids(kube, "slow") == uids
        assert _recreations(kube, "slow") == 0
        assert "restarted" not in json.dumps(kube.gd("slow").get("status", {}))

        # Ready (with the old restarts): no recreation; then a restart after start: recreated.
        for pod in names:
            kubelet.set_pod(pod, ready=True, restarts=1)
        kube.wait_ready("slow", 1, timeout=60)
        kubelet.set_pod(names[0], ready=False, restarts=2)
        wait_for("the group to be recreated", lambda: _recreations(kube, "slow") >= 1, 60)
        wait_for(
            "new pods",
            lambda: (
                (b := kubelet.bound(kube, "slow"))
                and {p["metadata"]["uid"] for p in b}.isdisjoint(uids.values())
            ),
            60,
        )

        # RecreateGroupOnPodRestart: a restart while loading recreates the group at once.
        kube.apply(
            small(
                "slow",
                namespace,
                replicas=1,
                nodeSelector={LABEL: unmanaged_node},
                tolerations=[{"operator": "Exists"}],
                failurePolicy={"backoffSeconds": 0, "restartPolicy": ON_POD_RESTART},
            )
        )
        fresh = wait_for("the new pods bound", lambda: kubelet.bound(kube, "slow"), 60)
        kubelet.set_pod(fresh[0]["metadata"]["name"], ready=False, restarts=1)
        wait_for("a second recreation", lambda: _recreations(kube, "slow") >= 2, 60)
    finally:
        operator.stop()
