"""The status report: which story the conditions tell, and no write when nothing changed."""

from __future__ import annotations

from typing import Any

import pytest

from grok_operator.capacity import plan_memory
from grok_operator.constants import Phase, Reason
from grok_operator.observe import GroupObservation, GroupState
from grok_operator.planner import GroupPlan
from grok_operator.status_report import (
    ReportInputs,
    infeasible_status,
    invalid_status,
    serving_status,
    status_document,
    status_patch,
)
from grok_operator.validation import SpecProblem
from grok_worker.contract import MeshSpec
from grok_worker.model_config import PRESETS

FITS = plan_memory(
    PRESETS["grok-1"],
    quantization="int8",
    mesh=MeshSpec(model=8),
    max_batch=8,
    max_seq_len=8192,
    device_memory_bytes=80 * 2**30,
)
TIGHT = plan_memory(
    PRESETS["grok-1"],
    quantization="int8",
    mesh=MeshSpec(model=2),
    max_batch=8,
    max_seq_len=8192,
    device_memory_bytes=24 * 2**30,
)


def inputs(previous: list[dict[str, Any]] | None = None, now: str = "2026-01-01T00:00:00Z") -> ReportInputs:
    return ReportInputs(
        generation=3, now=now, previous_conditions=previous or [], endpoint="x.ns.svc:50051", selector="s"
    )


def g(index: int, state: GroupState, updated: bool = True, message: str = "") -> GroupObservation:
    return GroupObservation(index=index, name=f"x-g{index}", state=state, updated=updated, message=message)


def conditions(status: Any) -> dict[str, tuple[str, str]]:
    return {cond.type: (cond.status, cond.reason) for cond in status.conditions}


CASES = [
    (
        "every group ready and updated is Ready",
        2,
        {0: g(0, GroupState.READY), 1: g(1, GroupState.READY)},
        Phase.READY,
        {
            "Ready": ("True", Reason.READY),
            "Progressing": ("False", Reason.READY),
            "Degraded": ("False", Reason.AS_EXPECTED),
        },
    ),
    (
        "groups starting up are Loading",
        2,
        {0: g(0, GroupState.READY), 1: g(1, GroupState.LOADING, message="1/2 hosts ready")},
        Phase.LOADING,
        {
            "Ready": ("False", Reason.LOADING),
            "Progressing": ("True", Reason.LOADING),
            "Degraded": ("False", Reason.AS_EXPECTED),
        },
    ),
    (
        "an unplaceable pod is a capacity problem, not loading",
        2,
        {
            0: g(0, GroupState.READY),
            1: g(1, GroupState.UNSCHEDULABLE, message="pod x cannot be scheduled: 0/4 nodes"),
        },
        Phase.UNSCHEDULABLE,
        {
            "Ready": ("False", Reason.UNSCHEDULABLE),
            "Progressing": ("False", Reason.UNSCHEDULABLE),
            "Degraded": ("True", Reason.UNSCHEDULABLE),
        },
    ),
    (
        "pods the StatefulSet controller cannot create name that failure, before an unplaceable pod",
        3,
        {
            0: g(0, GroupState.READY),
            1: g(1, GroupState.UNSCHEDULABLE, message="pod x cannot be scheduled: 0/4 nodes"),
            2: g(2, GroupState.POD_CREATION_FAILED, message='serviceaccount "missing" not found'),
        },
        Phase.UNSCHEDULABLE,
        {
            "Ready": ("False", Reason.POD_CREATION_FAILED),
            "Progressing": ("False", Reason.POD_CREATION_FAILED),
            "Degraded": ("True", Reason.POD_CREATION_FAILED),
        },
    ),
    (
        "a failing group is crash looping",
        2,
        {0: g(0, GroupState.READY), 1: g(1, GroupState.FAILED, message="pod restarted")},
        Phase.DEGRADED,
        {
            "Ready": ("False", Reason.CRASH_LOOPING),
            "Progressing": ("True", Reason.CRASH_LOOPING),
            "Degraded": ("True", Reason.CRASH_LOOPING),
        },
    ),
    (
        "outdated groups are rolling",
        2,
        {0: g(0, GroupState.READY, updated=False), 1: g(1, GroupState.READY)},
        Phase.ROLLING,
        {
            "Ready": ("False", Reason.ROLLING),
            "Progressing": ("True", Reason.ROLLING),
            "Degraded": ("False", Reason.AS_EXPECTED),
        },
    ),
    (
        "zero replicas is scaled to zero",
        0,
        {},
        Phase.SCALED_TO_ZERO,
        {
            "Ready": ("True", Reason.SCALED_TO_ZERO),
            "Progressing": ("False", Reason.SCALED_TO_ZERO),
            "Degraded": ("False", Reason.AS_EXPECTED),
        },
    ),
]


@pytest.mark.parametrize(
    ("case", "replicas", "groups", "phase", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_serving_status(
    case: str,
    replicas: int,
    groups: dict[int, GroupObservation],
    phase: str,
    expected: dict[str, tuple[str, str]],
) -> None:
    status = serving_status(
        inputs(), replicas=replicas, capacity=FITS, groups=groups, plan=GroupPlan(keep=tuple(range(replicas)))
    )
    assert status.phase == phase
    assert conditions(status) == expected
    assert status.observed_generation == 3


def test_the_unschedulable_message_carries_the_schedulers_words() -> None:
    groups = {
        0: g(0, GroupState.UNSCHEDULABLE, message="pod x-g0-0 cannot be scheduled: 0/4 nodes are available")
    }
    status = serving_status(inputs(), replicas=1, capacity=FITS, groups=groups, plan=GroupPlan(keep=(0,)))
    assert "0/4 nodes are available" in status.conditions[0].message


def test_counters_and_the_memory_plan() -> None:
    groups = {0: g(0, GroupState.READY), 1: g(1, GroupState.LOADING, updated=False)}
    status = serving_status(inputs(), replicas=2, capacity=FITS, groups=groups, plan=GroupPlan(keep=(0, 1)))
    assert (status.replicas, status.ready_replicas, status.updated_replicas) == (2, 1, 1)
    assert status.memory_plan is not None
    assert status.memory_plan.fits
    assert status.endpoint == "x.ns.svc:50051"
    assert [grp.name for grp in status.groups] == ["x-g0", "x-g1"]


def test_an_invalid_spec_reports_every_problem() -> None:
    problems = [SpecProblem("spec.a", "fix a"), SpecProblem("spec.b", "fix b")]
    status = invalid_status(inputs(), problems, {})
    assert status.phase == Phase.INVALID
    assert status.conditions[0].message == "spec.a: fix a; spec.b: fix b"
    assert conditions(status)["Degraded"] == ("True", Reason.INVALID_SPEC)


def test_an_infeasible_spec_reports_the_numbers_and_the_advice() -> None:
    status = infeasible_status(inputs(), TIGHT, {})
    message = status.conditions[0].message
    assert status.phase == Phase.INFEASIBLE
    assert "24.0 GiB" in message
    assert "gpuMemory" in message
    assert status.memory_plan is not None
    assert not status.memory_plan.fits


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    groups = {0: g(0, GroupState.READY)}
    first = serving_status(
        inputs(now="2026-01-01T00:00:00Z"),
        replicas=1,
        capacity=FITS,
        groups=groups,
        plan=GroupPlan(keep=(0,)),
    )
    previous = status_document(first)["conditions"]
    second = serving_status(
        inputs(previous, now="2026-01-01T01:00:00Z"),
        replicas=1,
        capacity=FITS,
        groups=groups,
        plan=GroupPlan(keep=(0,)),
    )
    assert status_document(second) == status_document(first)
    loading = {0: g(0, GroupState.LOADING)}
    third = serving_status(
        inputs(previous, now="2026-01-01T02:00:00Z"),
        replicas=1,
        capacity=FITS,
        groups=loading,
        plan=GroupPlan(keep=(0,)),
    )
    assert third.conditions[0].last_transition_time == "2026-01-01T02:00:00Z"


def test_no_patch_when_the_live_status_already_agrees() -> None:
    status = serving_status(
        inputs(), replicas=1, capacity=FITS, groups={0: g(0, GroupState.READY)}, plan=GroupPlan(keep=(0,))
    )
    live = {**status_document(status), "kopf": {"progress": {}}}
    assert status_patch(live, status) is None
    changed = {**live, "readyReplicas": 0}
    assert status_patch(changed, status) == {"readyReplicas": 1}
