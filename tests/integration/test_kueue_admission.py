"""Gang admission and GPU quotas with the real Kueue (built from its Go module) on the real control
plane, kwok GPU nodes, and the operator running in-process.

Each test gets a namespace Kueue manages (`kueue_namespace`), its own pool of fake 8-GPU nodes
(labelled with the namespace, so the GrokDeployments of one test only ever see their own pool),
and its own ResourceFlavor / ClusterQueue / LocalQueue. Shown here:
- without a queue, two 2-host GrokDeployments on three free nodes leave a group partly placed:
  a pod holds a node's 8 GPUs while its sibling cannot be scheduled, so that group never starts;
- with a queue, the same pair: one group is admitted whole and runs, the other waits whole
  (no pod placed, no GPU held) with Kueue's reason in its status, and runs once the first is gone;
- the ClusterQueue's nvidia.com/gpu quota holds: a third group waits, then runs when one is deleted;
- a higher-priority GrokDeployment preempts a lower one group-wise (WorkloadPriorityClass);
- a group of 4 hosts is admitted and Ready among 100 nodes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from test_operator_support import Kube, manifest, wait_for

from grok_operator import constants as c
from grok_operator.runtime import OperatorThread

pytestmark = pytest.mark.cluster

POOL_LABEL = "grok-test/pool"


class Pool:
    """Fake 8-GPU nodes labelled for one test, deleted afterwards."""

    def __init__(self, cluster: Any, name: str) -> None:
        self.cluster = cluster
        self.name = name
        self.nodes: list[str] = []

    def add(self, count: int) -> list[str]:
        names = self.cluster.add_gpu_nodes(count, gpus=8, prefix=f"{self.name}-n", wait=False)
        self.nodes += names
        for start in range(0, len(names), 50):
            self.cluster.kubectl("label", "node", *names[start : start + 50], f"{POOL_LABEL}={self.name}")
        self.cluster.wait_nodes_ready(names, timeout_s=120)
        return names

    def delete(self) -> None:
        if self.nodes:
            self.cluster.kubectl(
                "delete", "node", "-l", f"{POOL_LABEL}={self.name}", "--wait=false", check=False
            )


@pytest.fixture
def pool(cluster: Any, kueue_namespace: str) -> Iterator[Pool]:
    nodes = Pool(cluster, kueue_namespace)
    try:
        yield nodes
    finally:
        nodes.delete()


@pytest.fixture
def kube(cluster: Any, kueue_namespace: str, operator: OperatorThread) -> Kube:
    return Kube(cluster, kueue_namespace)


def queue_objects(namespace: str, gpus: int, *, preemption: bool = False) -> list[dict[str, Any]]:
    """A ResourceFlavor, a ClusterQueue with `gpus` nvidia.com/gpu, and LocalQueue `grok`."""
    cluster_queue: dict[str, Any] = {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "ClusterQueue",
        "metadata": {"name": namespace},
        "spec": {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
            "resourceGroups": [
                {
                    "coveredResources": ["nvidia.com/gpu"],
                    "flavors": [
                        {"name": namespace, "resources": [{"name": "nvidia.com/gpu", "nominalQuota": gpus}]}
                    ],
                }
            ],
        },
    }
    if preemption:
        cluster_queue["spec"]["preemption"] = {"withinClusterQueue": "LowerPriority"}
    return [
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": namespace}},
        cluster_queue,
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "LocalQueue",
            "metadata": {"name": "grok", "namespace": namespace},
            "spec": {"clusterQueue": namespace},
        },
    ]


@pytest.fixture
def make_queue(cluster: Any, kueue_namespace: str) -> Iterator[Any]:
    made: list[dict[str, Any]] = []

    def make(gpus: int, *, preemption: bool = False, extra: list[dict[str, Any]] | None = None) -> None:
        objects = [*queue_objects(kueue_namespace, gpus, preemption=preemption), *(extra or [])]
        cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in objects))
        made.extend(objects)

    yield make
    for obj in reversed(made):
        if obj["kind"] in ("ClusterQueue", "ResourceFlavor", "WorkloadPriorityClass"):
            cluster.kubectl(
                "delete", obj["kind"].lower(), obj["metadata"]["name"], "--wait=false", check=False
            )


def gd(name: str, namespace: str, hosts: int, gpus: int, **spec: Any) -> dict[str, Any]:
    """A 2-host (or `hosts`) GrokDeployment of one replica group pinned to the test's node pool."""
    body = manifest(
        name,
        namespace,
        replicas=1,
        topology={"hostsPerReplica": hosts, "gpusPerHost": gpus, "gpuMemory": "80Gi"},
        nodeSelector={POOL_LABEL: namespace},
        **spec,
    )
    return body


def bound(kube: Kube, name: str) -> list[str]:
    """Nodes the pods of `name` are bound to (pods not placed yet contribute nothing)."""
    return [p["spec"]["nodeName"] for p in kube.pods(name) if p["spec"].get("nodeName")]


def gated(kube: Kube, name: str) -> int:
    return sum(
        any(g["name"] == c.KUEUE_ADMISSION_GATE for g in p["spec"].get("schedulingGates") or [])
        for p in kube.pods(name)
    )


def phase(kube: Kube, name: str) -> str:
    return str(kube.gd(name).get("status", {}).get("phase", ""))


def wait_queued(kube: Kube, name: str, hosts: int, words: str = "", timeout: float = 60) -> dict[str, Any]:
    """Until `name` reports Queued (its Ready message quoting `words` of Kueue's) with all `hosts`
    pods gated and none placed; returns its Ready condition."""

    def queued() -> dict[str, Any] | None:
        ready = kube.condition(name, c.ConditionType.READY)
        waiting = phase(kube, name) == c.Phase.QUEUED and gated(kube, name) == hosts and not bound(kube, name)
        if waiting and words in ready.get("message", ""):
            return ready
        pods = [(p["metadata"]["name"], p["spec"].get("nodeName"), p["spec"].get("schedulingGates"),
                 p["status"].get("phase")) for p in kube.pods(name)]  # fmt: skip
        raise AssertionError(f"phase {phase(kube, name)}, Ready {ready}, pods {pods}")

    return wait_for(f"{name} to wait for admission with {hosts} gated pods", queued, timeout)


def test_without_a_queue_two_groups_on_three_nodes_leave_one_partly_placed_holding_gpus(
    kube: Kube, pool: Pool, kueue_namespace: str
) -> None:
    pool.add(3)
    for name in ("a", "b"):
        kube.apply(gd(name, kueue_namespace, hosts=2, gpus=8))

    def settled() -> list[int] | None:
        placed = [len(bound(kube, name)) for name in ("a", "b")]
        return placed if sum(placed) == 3 else None

    placed = wait_for("three of the four pods to be placed", settled, 60)
    assert sorted(placed) == [1, 2]  # one group runs, the other is only partly placed
    partial = "a" if placed[0] == 1 else "b"
    wait_for(f"{partial} to report Unschedulable", lambda: phase(kube, partial) == c.Phase.UNSCHEDULABLE, 30)
    time.sleep(3)  # nothing moves: the placed pod keeps its 8 GPUs idle, its sibling stays pending
    assert len(bound(kube, partial)) == 1
    status = kube.gd(partial)["status"]
    assert status["phase"] == c.Phase.UNSCHEDULABLE
    assert status["readyReplicas"] == 0
    assert "nvidia.com/gpu" in kube.condition(partial, c.ConditionType.READY)["message"]


def test_with_a_queue_one_group_runs_whole_and_the_other_waits_whole_then_runs(
    kube: Kube, pool: Pool, make_queue: Any, kueue_namespace: str
) -> None:
    pool.add(3)
    make_queue(24)  # the three nodes' GPUs
    kube.apply(gd("a", kueue_namespace, hosts=2, gpus=8, queueName="grok"))
    kube.wait_ready("a", 1)
    kube.apply(gd("b", kueue_namespace, hosts=2, gpus=8, queueName="grok"))
    # Kueue's own words name the quota that is short.
    ready = wait_queued(kube, "b", hosts=2, words="nvidia.com/gpu")
    assert ready["reason"] == c.Reason.WAITING_FOR_ADMISSION
    assert "waiting for admission" in ready["message"]
    assert kube.condition("b", c.ConditionType.DEGRADED)["status"] == "False"
    assert len(set(bound(kube, "a"))) == 2
    kube.cluster.kubectl("delete", c.PLURAL, "a", "-n", kueue_namespace)
    kube.wait_ready("b", 1, timeout=90)
    assert len(set(bound(kube, "b"))) == 2


def test_the_gpu_quota_holds_a_third_group_waits_then_runs_when_one_is_deleted(
    kube: Kube, pool: Pool, make_queue: Any, kueue_namespace: str
) -> None:
    pool.add(3)
    make_queue(16)  # two groups of 2 hosts x 4 GPUs; the nodes would fit three
    for name in ("a", "b"):
        kube.apply(gd(name, kueue_namespace, hosts=2, gpus=4, queueName="grok"))
    for name in ("a", "b"):
        kube.wait_ready(name, 1)
    kube.apply(gd("c", kueue_namespace, hosts=2, gpus=4, queueName="grok"))
    wait_queued(kube, "c", hosts=2)
    kube.cluster.kubectl("delete", c.PLURAL, "a", "-n", kueue_namespace)
    kube.wait_ready("c", 1, timeout=90)
    assert phase(kube, "b") == c.Phase.READY


def test_a_higher_priority_grokdeployment_preempts_a_lower_one_whole(
    kube: Kube, pool: Pool, make_queue: Any, kueue_namespace: str
) -> None:
    pool.add(2)
    classes = [
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "WorkloadPriorityClass",
            "metadata": {"name": f"{kueue_namespace}-{level}"},
            "value": value,
        }
        for level, value in (("low", 100), ("high", 1000))
    ]
    make_queue(16, preemption=True, extra=classes)

    def with_priority(name: str, level: str) -> dict[str, Any]:
        body = gd(name, kueue_namespace, hosts=2, gpus=8, queueName="grok")
        body["metadata"]["labels"] = {c.KUEUE_PRIORITY_CLASS_LABEL: f"{kueue_namespace}-{level}"}
        return body

    kube.apply(with_priority("low", "low"))
    kube.wait_ready("low", 1)
    before = {p["metadata"]["uid"] for p in kube.pods("low")}
    kube.apply(with_priority("high", "high"))
    kube.wait_ready("high", 1, timeout=90)
    wait_queued(kube, "low", hosts=2, timeout=60)
    assert len(set(bound(kube, "high"))) == 2
    # The low group came back whole: none of its old pods is left, both new ones wait in the queue.
    assert not before & {p["metadata"]["uid"] for p in kube.pods("low")}
    # Kueue says why: it preempted the low group's Workload (an Event on it, kept after the fact).
    preempted = [e for e in kube.items("events") if e.get("reason") == "Preempted"]
    assert preempted, [e.get("reason") for e in kube.items("events")]
    assert all(e["involvedObject"]["kind"] == "Workload" for e in preempted)


def test_a_group_of_four_hosts_is_admitted_and_ready_among_a_hundred_nodes(
    kube: Kube, pool: Pool, make_queue: Any, kueue_namespace: str
) -> None:
    pool.add(100)
    make_queue(800)
    wide = gd("wide", kueue_namespace, hosts=4, gpus=8, queueName="grok")
    wide["spec"]["topology"]["mesh"] = {"data": 1, "expert": 2, "model": 16}  # 48 heads / 16
    kube.apply(wide)
    kube.wait_ready("wide", 1, timeout=120)
    pods = kube.pods("wide")
    assert len(pods) == 4
    assert len({p["spec"]["nodeName"] for p in pods}) == 4
    assert {p["metadata"]["labels"][c.KUEUE_POD_GROUP_NAME_LABEL] for p in pods} == {
        pods[0]["metadata"]["labels"][c.KUEUE_POD_GROUP_NAME_LABEL]
    }


def test_a_rollout_moves_a_queued_group_to_a_new_pod_group_within_the_quota(
    kube: Kube, pool: Pool, make_queue: Any, kueue_namespace: str
) -> None:
    pool.add(2)
    make_queue(16)  # exactly one group: the new pods are admitted only once the old ones are gone
    body = gd("roll", kueue_namespace, hosts=2, gpus=8, queueName="grok")
    kube.apply(body)
    kube.wait_ready("roll", 1)
    old_group = {p["metadata"]["labels"][c.KUEUE_POD_GROUP_NAME_LABEL] for p in kube.pods("roll")}
    body["spec"]["image"] = "example.invalid/grok-worker:next"
    kube.apply(body)

    def rolled() -> set[str] | None:
        gd_status = kube.gd("roll").get("status", {})
        pods = kube.pods("roll")
        groups = {p["metadata"]["labels"][c.KUEUE_POD_GROUP_NAME_LABEL] for p in pods}
        done = gd_status.get("phase") == c.Phase.READY and gd_status.get("updatedReplicas") == 1
        return groups if done and len(pods) == 2 and not groups & old_group else None

    new_group = wait_for("the group to roll onto its new pod template", rolled, 90)
    assert len(new_group) == 1
