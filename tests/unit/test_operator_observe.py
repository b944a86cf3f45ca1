"""Classifying a replica group from its live pods (pure): all-or-nothing groups."""

from __future__ import annotations

from typing import Any

import pytest

from grok_operator import constants as c
from grok_operator.observe import GroupState, observe_group

HASH = "abc123"
STS = {"metadata": {"name": "g0", "annotations": {c.ANNOTATION_RENDER_HASH: "r1"}}}


def pod(
    index: int,
    *,
    ready: bool = True,
    created: str = "2026-01-01T00:00:00Z",
    ready_at: str = "2026-01-01T00:00:05Z",
    restarts: int = 0,
    phase: str = "Running",
    terminating: bool = False,
    template: str = HASH,
    unschedulable: str | None = None,
    waiting: str | None = None,
    said: str = "",
) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = [
        {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": ready_at}
    ]
    if unschedulable is not None:
        conditions.append(
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": unschedulable}
        )
    container: dict[str, Any] = {"name": "worker", "restartCount": restarts, "state": {}}
    if restarts:
        container["lastState"] = {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
    if said:  # the worker's termination message (it writes /dev/termination-log when it fails)
        container["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "message": said}}
    if waiting:
        container["state"] = {"waiting": {"reason": waiting}}
    meta: dict[str, Any] = {
        "name": f"g0-{index}",
        "uid": f"uid-{index}-{created}",
        "creationTimestamp": created,
        "labels": {c.LABEL_TEMPLATE_HASH: template},
    }
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:01:00Z"
    return {
        "metadata": meta,
        "status": {"phase": phase, "conditions": conditions, "containerStatuses": [container]},
    }


CASES: list[tuple[str, list[dict[str, Any]], GroupState, str]] = [
    ("every host ready makes the group ready", [pod(0), pod(1)], GroupState.READY, ""),
    (
        "a host not ready yet means loading",
        [pod(0), pod(1, ready=False)],
        GroupState.LOADING,
        "1/2 hosts ready",
    ),
    ("a missing host means loading", [pod(0)], GroupState.LOADING, "1/2 hosts ready"),
    (
        "a waiting container's reason is shown while loading",
        [pod(0, ready=False, waiting="ContainerCreating"), pod(1, ready=False)],
        GroupState.LOADING,
        "(ContainerCreating)",
    ),
    (
        "a pod the scheduler cannot place carries the scheduler's message",
        [
            pod(0),
            pod(1, ready=False, unschedulable="0/4 nodes are available: 4 Insufficient nvidia.com/gpu."),
        ],
        GroupState.UNSCHEDULABLE,
        "pod g0-1 cannot be scheduled: 0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
    ),
    (
        "a restarted container fails the whole group",
        [pod(0), pod(1, restarts=1)],
        GroupState.FAILED,
        "pod g0-1 restarted 1 time(s): container worker exited with code 137 (OOMKilled)",
    ),
    (
        "a worker's termination message (a checkpoint file failing verification) reaches the status",
        [pod(0), pod(1, restarts=1, said="loading failed: /ckpt/ckpt-0: 1 file(s) differ: tensor00007_000")],
        GroupState.FAILED,
        "container worker exited with code 1 (Error): loading failed: /ckpt/ckpt-0: 1 file(s) differ: "
        "tensor00007_000",
    ),
    (
        "a failed pod fails the whole group",
        [pod(0), pod(1, phase="Failed")],
        GroupState.FAILED,
        "pod g0-1 failed",
    ),
    (
        "a pod deleted under a running group fails the group",
        [pod(0), pod(1, terminating=True)],
        GroupState.FAILED,
        "pod g0-1 was deleted while the rest of its group kept running",
    ),
    (
        "a replacement created after its sibling became ready fails the group",
        [pod(0), pod(1, created="2026-01-01T00:01:00Z", ready=False)],
        GroupState.FAILED,
        "pod g0-1 was replaced after its group had become ready",
    ),
    (
        "a pod the controller created a little late still belongs to the group's first burst",
        [pod(0), pod(1, created="2026-01-01T00:00:20Z", ready=False)],
        GroupState.LOADING,
        "1/2 hosts ready",
    ),
    (
        "a group whose pods are all terminating is being recreated",
        [pod(0, terminating=True), pod(1, terminating=True)],
        GroupState.RECREATING,
        "",
    ),
]


@pytest.mark.parametrize(("case", "pods", "state", "message"), CASES, ids=[c[0] for c in CASES])
def test_classification(case: str, pods: list[dict[str, Any]], state: GroupState, message: str) -> None:
    group = observe_group(0, "g0", STS, pods, hosts=2, template_hash=HASH)
    assert group.state is state
    assert message in group.message


def test_no_statefulset_means_absent() -> None:
    assert observe_group(0, "g0", None, [], hosts=2, template_hash=HASH).state is GroupState.ABSENT


def test_pods_the_operator_deleted_itself_are_not_a_failure() -> None:
    old = pod(1, terminating=True)
    group = observe_group(
        0,
        "g0",
        STS,
        [pod(0), old],
        hosts=2,
        template_hash=HASH,
        deleted_uids=frozenset({old["metadata"]["uid"]}),
    )
    assert group.state is GroupState.RECREATING


def test_a_crash_is_told_apart_from_a_lost_pod() -> None:
    crashed = observe_group(0, "g0", STS, [pod(0), pod(1, restarts=2)], hosts=2, template_hash=HASH)
    lost = observe_group(0, "g0", STS, [pod(0), pod(1, terminating=True)], hosts=2, template_hash=HASH)
    assert crashed.crashed
    assert not lost.crashed


def test_updated_means_every_live_pod_runs_the_current_template() -> None:
    mixed = observe_group(0, "g0", STS, [pod(0), pod(1, template="old")], hosts=2, template_hash=HASH)
    assert not mixed.updated
    assert observe_group(0, "g0", STS, [], hosts=2, template_hash=HASH).updated


def test_a_deleting_statefulset_is_recreating() -> None:
    deleting = {"metadata": {"name": "g0", "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    assert (
        observe_group(0, "g0", deleting, [pod(0)], hosts=2, template_hash=HASH).state is GroupState.RECREATING
    )


def test_live_pods_are_listed_for_recreation() -> None:
    group = observe_group(0, "g0", STS, [pod(0), pod(1, restarts=1)], hosts=2, template_hash=HASH)
    assert group.live_pods == ("g0-0", "g0-1")
    assert group.statefulset_hash == "r1"


def test_without_a_usable_spec_the_statefulset_says_how_many_hosts_and_which_template() -> None:
    sts = {
        "metadata": {"name": "g0"},
        "spec": {"replicas": 2, "template": {"metadata": {"labels": {c.LABEL_TEMPLATE_HASH: HASH}}}},
    }
    group = observe_group(0, "g0", sts, [pod(0), pod(1)], hosts=0, template_hash="")
    assert group.state is GroupState.READY
    assert group.updated


def test_a_deletion_the_watch_saw_fails_the_group_even_after_the_replacement_arrived() -> None:
    replaced = [pod(0), pod(1, created="2026-01-01T00:00:06Z", ready=False)]
    group = observe_group(0, "g0", STS, replaced, hosts=2, template_hash=HASH, lost_pods=("g0-1",))
    assert group.state is GroupState.FAILED
    assert group.message == "pod g0-1 was deleted while the rest of its group kept running"
