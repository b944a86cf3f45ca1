"""One reconcile pass end to end against an in-memory API (no cluster): what it writes, and that a
second pass over an unchanged world writes nothing. The real apiserver runs the same flows in
tests/integration/test_operator_*.py."""

from __future__ import annotations

import copy
import json
from typing import Any

from grok_operator import constants as c
from grok_operator.kube import ApiError, KubeApi, Observed
from grok_operator.reconcile import DeploymentMemory, Reconciler

NS, NAME = "serving", "chat"


class MemoryApi(KubeApi):
    """Objects in a dict; writes counted like the real client's."""

    def __init__(self) -> None:  # no HTTP client
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.status: dict[str, Any] = {}
        self.events: list[tuple[str, str]] = []
        self.log: list[str] = []
        #: The wall clock in seconds: each pass runs a second later, pods are created "now".
        self.second = 0

    def now_iso(self) -> str:
        return f"2026-01-01T00:{self.second // 60:02d}:{self.second % 60:02d}Z"

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
                "NetworkPolicy": observed.network_policies,
            }
            if kind == "Pod":
                observed.pods.append(copy.deepcopy(obj))
            elif kind in table:
                table[kind][obj_name] = copy.deepcopy(obj)
        return observed

    def failed_creates(self, namespace: str) -> list[dict[str, Any]]:
        return []  # this API's StatefulSets always get their pods (run_pods)

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
                        "creationTimestamp": self.now_iso(),
                        "labels": {**template, c.LABEL_POD_INDEX: str(host)},
                    },
                    "status": {
                        "phase": "Running",
                        "conditions": [
                            {"type": "Ready", "status": "True", "lastTransitionTime": self.now_iso()}
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
    api.second += 1
    Reconciler(api).reconcile(body(api, **spec), memory, now=100.0, now_iso=api.now_iso())
    api.second += 1
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


def test_a_sibling_created_while_its_group_was_recreated_goes_with_that_recreation() -> None:
    api, memory = MemoryApi(), DeploymentMemory()
    run(api, memory)
    api.run_pods()
    run(api, memory)
    lost = api.objects.pop(("Pod", "chat-g0-1"))
    memory.pod_deleted(0, lost["metadata"]["uid"], "chat-g0-1")
    recreated_at = api.second + 1  # the next pass's time
    writes = run(api, memory)  # it lists the group before the controller replaces chat-g0-1
    assert "delete Pod chat-g0-0" in writes
    events = len(api.events)
    # The controller's replacement of chat-g0-1 was created between that list and the deletions.
    api.second = recreated_at - 1
    api.run_pods()
    api.objects.pop(("Pod", "chat-g0-0"))  # chat-g0-0's replacement comes later
    api.second = recreated_at + 1
    writes = run(api, memory)
    assert "delete Pod chat-g0-1" in writes, "the sibling of the failed incarnation was left running"
    assert len(api.events) == events, "one failure, one recreation: no second GroupRecreated"
    # Pods created after the recreation are the new incarnation: left alone, the group gets Ready.
    api.run_pods()
    assert not [w for w in run(api, memory) if w.startswith("delete")]
    assert api.status["phase"] == "Ready"
    assert len(api.events) == events


class RefusingApi(MemoryApi):
    """Refuses every StatefulSet the way the apiserver refuses an invalid one."""

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        if obj["kind"] == "StatefulSet":
            self.log.append(f"refused {obj['metadata']['name']}")
            document = {
                "kind": "Status",
                "message": "StatefulSet is invalid: spec.template.spec.affinity.nodeAffinity: Required value",
                "details": {"causes": [{"field": "spec.template.spec.affinity.nodeAffinity"}]},
            }
            raise ApiError("PATCH", "/statefulsets", 422, json.dumps(document))
        return super().apply(obj)


def test_a_refused_child_is_reported_once_and_retried_only_when_the_spec_changes() -> None:
    api, memory = RefusingApi(), DeploymentMemory()
    first = run(api, memory)
    assert "refused chat-g0" in first
    assert api.status["phase"] == "Invalid"
    ready = api.status["conditions"][0]
    assert ready["reason"] == c.Reason.REFUSED_BY_API_SERVER
    assert "spec.affinity" in ready["message"]
    assert "Required value" in ready["message"]
    assert api.events[-1][0] == c.Reason.REFUSED_BY_API_SERVER
    assert run(api, memory) == [], "an unchanged refused spec is not tried again at once"
    start = len(api.log)
    edited = body(api)
    edited["metadata"]["generation"] = 2
    Reconciler(api).reconcile(edited, memory, now=100.0, now_iso=api.now_iso())
    assert "refused chat-g0" in api.log[start:], "a changed spec is tried again"


def test_a_child_changed_by_hand_is_put_back_once_with_an_event() -> None:
    api, memory = MemoryApi(), DeploymentMemory()
    run(api, memory)
    api.run_pods()
    run(api, memory)
    sts = api.objects[("StatefulSet", "chat-g0")]
    sts["spec"]["replicas"] = 5
    sts["metadata"]["generation"] = 7  # someone else's write
    writes = run(api, memory)
    assert "apply StatefulSet chat-g0" in writes
    assert api.events[-1][0] == c.EventReason.DRIFT_CORRECTED
    assert "spec.replicas" in api.events[-1][1]
    assert api.objects[("StatefulSet", "chat-g0")]["spec"]["replicas"] == 2
    assert run(api, memory) == []
