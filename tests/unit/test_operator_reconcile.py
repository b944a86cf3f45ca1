"""One reconcile pass end to end against an in-memory API (no cluster): what it writes, and that a
second pass over an unchanged world writes nothing. The real apiserver runs the same flows in
tests/integration/test_operator_*.py."""

from __future__ import annotations

import copy
from typing import Any

from grok_operator import constants as c
from grok_operator.kube import KubeApi, Observed
from grok_operator.reconcile import DeploymentMemory, Reconciler

NS, NAME = "serving", "chat"


class MemoryApi(KubeApi):
    """Objects in a dict; writes counted like the real client's."""

    def __init__(self) -> None:  # no HTTP client
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.status: dict[str, Any] = {}
        self.events: list[tuple[str, str]] = []
        self.log: list[str] = []

    @property
    def writes(self) -> int:
        return len(self.log)

    def observe(self, namespace: str, name: str) -> Observed:
        observed = Observed()
        for (kind, obj_name), obj in self.objects.items():
            if obj["metadata"]["labels"].get(c.LABEL_DEPLOYMENT) != name:
                continue
            table = {
                "StatefulSet": observed.statefulsets,
                "Service": observed.services,
                "ConfigMap": observed.config_maps,
            }
            if kind == "Pod":
                observed.pods.append(copy.deepcopy(obj))
            elif kind in table:
                table[kind][obj_name] = copy.deepcopy(obj)
        return observed

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.objects.get((kind, name))
        return copy.deepcopy(found) if found is not None else None

    def list(self, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        key, _, value = label_selector.partition("=")
        return [
            copy.deepcopy(obj)
            for (k, _), obj in self.objects.items()
            if k == kind and obj["metadata"]["labels"].get(key) == value
        ]

    def create(self, obj: dict[str, Any]) -> bool:
        if (obj["kind"], obj["metadata"]["name"]) in self.objects:
            return False
        self.apply(obj)
        self.log[-1] = f"create {obj['kind']} {obj['metadata']['name']}"
        return True

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.log.append(f"apply {obj['kind']} {obj['metadata']['name']}")
        stored = copy.deepcopy(obj)
        stored["metadata"]["uid"] = f"uid-{obj['metadata']['name']}"
        self.objects[(obj["kind"], obj["metadata"]["name"])] = stored
        return stored

    def delete(
        self, kind: str, namespace: str, name: str, *, uid: str | None = None, propagation: str = "Background"
    ) -> bool:
        self.log.append(f"delete {kind} {name}")
        return self.objects.pop((kind, name), None) is not None

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        self.log.append("patch status")
        self.status.update(copy.deepcopy(status))
        return {}

    def post_event(self, involved: Any, *, reason: str, message: str, warning: bool = False) -> None:
        self.log.append(f"event {reason}")
        self.events.append((reason, message))

    def run_pods(self, *, restarts_of: str = "") -> None:
        """What the StatefulSet controller and kubelet would do: Ready pods for every StatefulSet."""
        for (kind, name), sts in list(self.objects.items()):
            if kind != "StatefulSet":
                continue
            template = sts["spec"]["template"]["metadata"]["labels"]
            for host in range(sts["spec"]["replicas"]):
                pod_name = f"{name}-{host}"
                if ("Pod", pod_name) in self.objects and pod_name != restarts_of:
                    continue
                self.objects[("Pod", pod_name)] = {
                    "metadata": {
                        "name": pod_name,
                        "uid": f"uid-{pod_name}-{len(self.log)}",
                        "creationTimestamp": "2026-01-01T00:00:00Z",
                        "labels": {**template, c.LABEL_POD_INDEX: str(host)},
                    },
                    "status": {
                        "phase": "Running",
                        "conditions": [
                            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:10Z"}
                        ],
                        "containerStatuses": [
                            {"name": "worker", "restartCount": 1 if pod_name == restarts_of else 0}
                        ],
                    },
                }


def body(api: MemoryApi, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "replicas": 2,
        "model": {"preset": "tiny", "checkpoint": {"hostPath": {"path": "/m"}}},
        "topology": {"hostsPerReplica": 2, "gpusPerHost": 1, "gpuMemory": "16Gi"},
        "failurePolicy": {"backoffSeconds": 0},
    }
    base.update(spec)
    return {
        "metadata": {"name": NAME, "namespace": NS, "uid": "gd-uid", "generation": 1},
        "spec": base,
        "status": copy.deepcopy(api.status),
    }


def run(api: MemoryApi, memory: DeploymentMemory, **spec: Any) -> list[str]:
    start = len(api.log)
    Reconciler(api).reconcile(body(api, **spec), memory, now=100.0, now_iso="2026-01-01T00:01:00Z")
    return api.log[start:]


def test_a_new_deployment_creates_its_children_then_a_second_pass_writes_nothing() -> None:
    api, memory = MemoryApi(), DeploymentMemory()
    first = run(api, memory)
    assert first == [
        "create Secret chat-g0-step-key",
        "create Secret chat-g1-step-key",
        "apply NetworkPolicy chat-g0",
        "apply NetworkPolicy chat-g1",
        "apply ConfigMap chat-worker-config",
        "apply Service chat",
        "apply Service chat-g0",
        "apply StatefulSet chat-g0",
        "apply Service chat-g1",
        "apply StatefulSet chat-g1",
        "patch status",
    ]
    assert run(api, memory) == []
    api.run_pods()
    assert run(api, memory) == ["patch status"]
    assert api.status["phase"] == "Ready"
    assert run(api, memory) == []


def test_a_restarted_pod_recreates_its_whole_group_with_an_event() -> None:
    api, memory = MemoryApi(), DeploymentMemory()
    run(api, memory)
    api.run_pods()
    run(api, memory)
    api.run_pods(restarts_of="chat-g1-0")
    writes = run(api, memory)
    assert "delete Pod chat-g1-0" in writes
    assert "delete Pod chat-g1-1" in writes
    assert not [w for w in writes if "chat-g0" in w]
    assert api.events[-1][0] == c.EventReason.GROUP_RECREATED
    assert "chat-g1" in api.events[-1][1]
    assert api.status["phase"] == "Degraded"


def test_an_infeasible_spec_creates_nothing_and_says_so_once() -> None:
    api, memory = MemoryApi(), DeploymentMemory()
    spec = {
        "model": {"preset": "grok-1", "checkpoint": {"hostPath": {"path": "/m"}}},
        "topology": {"gpusPerHost": 2, "gpuMemory": "24Gi"},
    }
    assert run(api, memory, **spec) == ["event InsufficientDeviceMemory", "patch status"]
    assert not api.objects
    assert run(api, memory, **spec) == []


def test_scaling_down_deletes_the_highest_group() -> None:
    api, memory = MemoryApi(), DeploymentMemory()
    run(api, memory)
    api.run_pods()
    run(api, memory)
    ready_since = api.status["conditions"][0]["lastTransitionTime"]
    writes = run(api, memory, replicas=1)
    assert api.status["phase"] == "Ready", "scaling down never makes a ready deployment unready"
    assert api.status["conditions"][0]["lastTransitionTime"] == ready_since
    assert api.status["replicas"] == 1
    assert "delete StatefulSet chat-g1" in writes
    assert "delete Service chat-g1" in writes
    assert ("StatefulSet", "chat-g0") in api.objects


def test_a_pod_deleted_by_someone_else_recreates_its_group_but_not_one_the_operator_deleted() -> None:
    api, memory = MemoryApi(), DeploymentMemory()
    run(api, memory)
    api.run_pods()
    run(api, memory)
    lost = api.objects.pop(("Pod", "chat-g0-1"))
    memory.pod_deleted(0, lost["metadata"]["uid"], "chat-g0-1")
    api.run_pods()  # the StatefulSet controller replaces it at once
    writes = run(api, memory)
    assert "delete Pod chat-g0-0" in writes
    assert "delete Pod chat-g0-1" in writes
    assert "pod chat-g0-1 was deleted" in api.events[-1][1]
    # The pods the operator just deleted disappear, and the watch says so afterwards: not a failure.
    api.run_pods()
    run(api, memory)
    for uid in list(memory.group(0).deleted_uids):
        memory.pod_deleted(0, uid, "chat-g0-x")
    assert not [w for w in run(api, memory) if w.startswith("delete")]
    assert api.status["phase"] == "Ready"
