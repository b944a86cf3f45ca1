"""Kueue gang admission in the operator (pure, no cluster): the pod-group metadata on the pod
template, the WaitingForAdmission classification, Kueue's words from a Workload, and the status.
The real Kueue admitting these groups is tested in tests/integration/test_kueue_admission.py."""

from __future__ import annotations

from typing import Any

import pytest

from grok_operator import constants as c
from grok_operator.admission import NO_WORKLOAD, admission_message
from grok_operator.capacity import plan_memory
from grok_operator.observe import GroupObservation, GroupState, gated_pod_groups, observe_group
from grok_operator.planner import GroupPlan
from grok_operator.render import Owner, statefulset, template_hash
from grok_operator.status_report import ReportInputs, serving_status
from grok_operator.validation import ValidSpec, validate
from grok_worker.contract import MeshSpec
from grok_worker.model_config import PRESETS

OWNER = Owner(name="chat", namespace="serving", uid="uid-1")
LABELLED = Owner(
    name="chat",
    namespace="serving",
    uid="uid-1",
    labels=((c.KUEUE_PRIORITY_CLASS_LABEL, "high"), (c.KUEUE_QUEUE_NAME_LABEL, "team-a")),
)


def valid(**spec: Any) -> ValidSpec:
    base: dict[str, Any] = {
        "replicas": 2,
        "model": {"preset": "grok-1", "checkpoint": {"pvc": {"claimName": "weights"}}},
        "topology": {"hostsPerReplica": 2, "gpusPerHost": 8},
        **spec,
    }
    result = validate(base, name="chat")
    assert isinstance(result, ValidSpec), result
    return result


def template_meta(owner: Owner, v: ValidSpec, index: int = 1) -> dict[str, Any]:
    meta: dict[str, Any] = statefulset(owner, v, index)["spec"]["template"]["metadata"]
    return meta


def test_without_a_queue_the_pods_carry_nothing_of_kueue() -> None:
    meta = template_meta(OWNER, valid())
    assert not [k for k in {**meta["labels"], **meta["annotations"]} if k.startswith("kueue.x-k8s.io/")]


def test_a_queue_name_makes_each_group_one_serving_pod_group_of_hosts_per_replica_pods() -> None:
    v = valid(queueName="team-a")
    meta = template_meta(OWNER, v, index=1)
    assert meta["labels"][c.KUEUE_QUEUE_NAME_LABEL] == "team-a"
    assert meta["labels"][c.KUEUE_POD_GROUP_NAME_LABEL] == f"chat-g1-{template_hash(OWNER, v)}"
    assert meta["annotations"][c.KUEUE_POD_GROUP_TOTAL_COUNT_ANNOTATION] == "2"
    assert meta["annotations"][c.KUEUE_POD_GROUP_SERVING_ANNOTATION] == "true"
    assert c.KUEUE_PRIORITY_CLASS_LABEL not in meta["labels"]


def test_the_pods_are_gated_for_the_operator_as_parent_so_kueue_adds_no_finalizer() -> None:
    meta = template_meta(OWNER, valid(queueName="team-a"))
    assert meta["annotations"][c.KUEUE_POD_SUSPENDING_PARENT_ANNOTATION] == "grok-operator"
    assert meta["labels"][c.KUEUE_MANAGED_LABEL] == "true"


def test_each_group_is_its_own_pod_group() -> None:
    v = valid(queueName="team-a")
    names = {template_meta(OWNER, v, i)["labels"][c.KUEUE_POD_GROUP_NAME_LABEL] for i in range(3)}
    assert len(names) == 3


def test_a_new_pod_template_starts_a_new_pod_group_so_a_rolled_group_never_matches_an_old_workload() -> None:
    before = template_meta(OWNER, valid(queueName="team-a"))["labels"][c.KUEUE_POD_GROUP_NAME_LABEL]
    after = template_meta(OWNER, valid(queueName="team-a", image="worker:2"))["labels"]
    assert after[c.KUEUE_POD_GROUP_NAME_LABEL] != before


def test_the_queue_and_priority_labels_of_the_grokdeployment_are_honoured() -> None:
    meta = template_meta(LABELLED, valid())
    assert meta["labels"][c.KUEUE_QUEUE_NAME_LABEL] == "team-a"
    assert meta["labels"][c.KUEUE_PRIORITY_CLASS_LABEL] == "high"


def test_spec_queue_name_wins_over_the_label() -> None:
    assert template_meta(LABELLED, valid(queueName="team-b"))["labels"][c.KUEUE_QUEUE_NAME_LABEL] == "team-b"


def test_a_queue_name_that_is_no_object_name_is_refused_naming_the_field() -> None:
    result = validate(
        {"model": {"preset": "grok-1", "checkpoint": {"pvc": {"claimName": "w"}}}, "queueName": "Team A"},
        name="chat",
    )
    assert isinstance(result, list)
    assert result[0].field == "spec.queueName"


def gated_pod(index: int, group: str = "chat-g0-abc") -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"chat-g0-{index}",
            "uid": f"u{index}",
            "labels": {c.LABEL_TEMPLATE_HASH: "abc", c.KUEUE_POD_GROUP_NAME_LABEL: group},
        },
        "spec": {"schedulingGates": [{"name": c.KUEUE_ADMISSION_GATE}]},
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}],
        },
    }


def test_gated_pods_mean_waiting_for_admission_with_kueues_words() -> None:
    group = observe_group(
        0,
        "chat-g0",
        {"metadata": {"name": "chat-g0"}},
        [gated_pod(0), gated_pod(1)],
        hosts=2,
        template_hash="abc",
        admission={"chat-g0-abc": "Pending: insufficient quota for nvidia.com/gpu"},
    )
    assert group.state is GroupState.WAITING_ADMISSION
    assert "chat-g0-abc" in group.message
    assert "insufficient quota for nvidia.com/gpu" in group.message


def test_only_live_gated_pods_name_their_pod_group() -> None:
    terminating = gated_pod(1, group="old")
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    ungated = gated_pod(2, group="admitted")
    ungated["spec"] = {}
    assert gated_pod_groups([gated_pod(0), terminating, ungated]) == ["chat-g0-abc"]


WORKLOADS: list[tuple[str, dict[str, Any] | None, str]] = [
    ("no Workload yet", None, NO_WORKLOAD),
    (
        "no quota: Kueue's reason and message",
        {"status": {"conditions": [{"type": "QuotaReserved", "status": "False", "reason": "Pending",
                                    "message": "insufficient unused quota for nvidia.com/gpu, 16 more needed"}]}},
        "Pending: insufficient unused quota for nvidia.com/gpu, 16 more needed",
    ),
    (
        "preempted: the eviction first",
        {"status": {"conditions": [
            {"type": "Evicted", "status": "True", "reason": "Preempted", "message": "Preempted by higher priority"},
            {"type": "QuotaReserved", "status": "False", "reason": "Pending", "message": "no quota"},
        ]}},
        "evicted (Preempted: Preempted by higher priority); now Pending: no quota",
    ),
    (
        "quota reserved, admission checks pending",
        {"status": {"conditions": [{"type": "QuotaReserved", "status": "True", "reason": "QuotaReserved"}]}},
        "quota reserved, not admitted yet: admission checks pending",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("case", "workload", "expected"), WORKLOADS, ids=[w[0] for w in WORKLOADS])
def test_admission_message(case: str, workload: dict[str, Any] | None, expected: str) -> None:
    assert admission_message(workload) == expected


def test_a_queued_group_is_its_own_story_not_unschedulable_nor_degraded() -> None:
    capacity = plan_memory(
        PRESETS["grok-1"],
        quantization="int8",
        mesh=MeshSpec(model=8),
        max_batch=8,
        max_seq_len=8192,
        device_memory_bytes=80 * 2**30,
    )
    groups = {
        0: GroupObservation(0, "x-g0", GroupState.READY),
        1: GroupObservation(
            1, "x-g1", GroupState.WAITING_ADMISSION, message="waiting for admission: no quota"
        ),
    }
    status = serving_status(
        ReportInputs(generation=1, now="2026-01-01T00:00:00Z", previous_conditions=[]),
        replicas=2,
        capacity=capacity,
        groups=groups,
        plan=GroupPlan(keep=(0, 1)),
    )
    conditions = {cond.type: cond for cond in status.conditions}
    assert status.phase == c.Phase.QUEUED
    assert conditions["Ready"].reason == c.Reason.WAITING_FOR_ADMISSION
    assert "no quota" in conditions["Ready"].message
    assert conditions["Progressing"].status == "True"
    assert conditions["Degraded"].status == "False"
