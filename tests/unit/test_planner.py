"""The rollout planner decides what happens next to the replica groups (pure, table-driven)."""

from __future__ import annotations

import pytest

from grok_operator.observe import GroupObservation, GroupState
from grok_operator.planner import GroupPlan, RolloutLimits, next_backoff, plan_groups

R, L, F, U, X, A = (
    GroupState.READY,
    GroupState.LOADING,
    GroupState.FAILED,
    GroupState.UNSCHEDULABLE,
    GroupState.RECREATING,
    GroupState.ABSENT,
)


def groups(*specs: tuple[GroupState, bool]) -> dict[int, GroupObservation]:
    """One observation per (state, updated), indexed from 0."""
    return {
        i: GroupObservation(
            index=i, name=f"g{i}", state=state, updated=updated, message="boom" if state is F else ""
        )
        for i, (state, updated) in enumerate(specs)
    }


def limits(
    replicas: int, max_unavailable: int = 1, max_surge: int = 0, recreate: bool = True
) -> RolloutLimits:
    return RolloutLimits(replicas, max_unavailable, max_surge, recreate)


CASES: list[tuple[str, RolloutLimits, dict[int, GroupObservation], GroupPlan]] = [
    ("a new deployment creates every group", limits(2), {}, GroupPlan(keep=(0, 1))),
    (
        "a settled deployment does nothing",
        limits(2),
        groups((R, True), (R, True)),
        GroupPlan(keep=(0, 1)),
    ),
    (
        "scaling up adds whole groups at the next indices",
        limits(4),
        groups((R, True), (R, True)),
        GroupPlan(keep=(0, 1, 2, 3)),
    ),
    (
        "scaling down removes the highest groups",
        limits(1),
        groups((R, True), (R, True), (L, True)),
        GroupPlan(keep=(0,), delete=(1, 2)),
    ),
    (
        "scaling to zero removes every group",
        limits(0),
        groups((R, True), (R, True)),
        GroupPlan(keep=(), delete=(0, 1)),
    ),
    (
        "a failed group is recreated whole",
        limits(2),
        groups((R, True), (F, True)),
        GroupPlan(keep=(0, 1), recreate=((1, "boom"),)),
    ),
    (
        "a failed group is left alone when the policy says Ignore",
        limits(2, recreate=False),
        groups((R, True), (F, True)),
        GroupPlan(keep=(0, 1)),
    ),
    (
        "a rollout with maxUnavailable 1 rolls one ready group, highest first",
        limits(3),
        groups((R, False), (R, False), (R, False)),
        GroupPlan(
            keep=(0, 1, 2),
            roll=(2,),
            notes=("2 outdated group(s) wait: 2 of 3 groups ready and maxUnavailable is 1",),
        ),
    ),
    (
        "a rollout waits while a group is still coming back",
        limits(3),
        groups((R, False), (R, False), (L, True)),
        GroupPlan(
            keep=(0, 1, 2), notes=("2 outdated group(s) wait: 2 of 3 groups ready and maxUnavailable is 1",)
        ),
    ),
    (
        "a rollout with maxUnavailable 2 rolls two groups at once",
        limits(3, max_unavailable=2),
        groups((R, False), (R, False), (R, False)),
        GroupPlan(
            keep=(0, 1, 2),
            roll=(1, 2),
            notes=("1 outdated group(s) wait: 1 of 3 groups ready and maxUnavailable is 2",),
        ),
    ),
    (
        "outdated groups that are down anyway are rolled at no cost",
        limits(3),
        groups((R, False), (U, False), (L, False)),
        GroupPlan(
            keep=(0, 1, 2),
            roll=(1, 2),
            notes=("1 outdated group(s) wait: 1 of 3 groups ready and maxUnavailable is 1",),
        ),
    ),
    (
        "groups already being recreated are not rolled again",
        limits(2),
        groups((R, True), (X, False)),
        GroupPlan(keep=(0, 1)),
    ),
    (
        "maxSurge creates an extra up-to-date group before taking any down",
        limits(2, max_unavailable=0, max_surge=1),
        groups((R, False), (R, False)),
        GroupPlan(
            keep=(0, 1, 2), notes=("2 outdated group(s) wait: 2 of 2 groups ready and maxUnavailable is 0",)
        ),
    ),
    (
        "a ready surge group lets one old group go",
        limits(2, max_unavailable=0, max_surge=1),
        groups((R, False), (R, False), (R, True)),
        GroupPlan(
            keep=(0, 1, 2),
            roll=(1,),
            notes=("1 outdated group(s) wait: 2 of 2 groups ready and maxUnavailable is 0",),
        ),
    ),
    (
        "the surge group stays until every regular group is ready",
        limits(2, max_unavailable=0, max_surge=1),
        groups((R, True), (L, True), (R, True)),
        GroupPlan(keep=(0, 1, 2)),
    ),
    (
        "the surge group goes once the rollout is complete",
        limits(2, max_unavailable=0, max_surge=1),
        groups((R, True), (R, True), (R, True)),
        GroupPlan(keep=(0, 1), delete=(2,)),
    ),
]


@pytest.mark.parametrize(("case", "lim", "observed", "expected"), CASES, ids=[c[0] for c in CASES])
def test_plan(
    case: str, lim: RolloutLimits, observed: dict[int, GroupObservation], expected: GroupPlan
) -> None:
    assert plan_groups(lim, observed) == expected


def test_a_failed_group_waits_for_its_backoff() -> None:
    observed = groups((R, True), (F, True))
    waiting = plan_groups(limits(2), observed, now=10.0, retry_at={1: 20.0})
    assert waiting.recreate == ()
    assert waiting.backing_off == (1,)
    due = plan_groups(limits(2), observed, now=20.0, retry_at={1: 20.0})
    assert due.recreate == ((1, "boom"),)


def test_a_rollout_never_takes_more_groups_down_than_allowed() -> None:
    """Drive a simulated rollout to the end; count unavailable regular groups at each step."""
    n, max_unavailable = 5, 2
    state = {i: GroupObservation(i, f"g{i}", R, updated=False) for i in range(n)}
    for _ in range(20):
        plan = plan_groups(limits(n, max_unavailable), state)
        for i in plan.roll:
            state[i] = GroupObservation(i, f"g{i}", L, updated=True)
        down = sum(not state[i].available for i in range(n))
        assert down <= max_unavailable
        # Groups that were loading come up before the next pass.
        if not plan.roll:
            state = {i: GroupObservation(i, f"g{i}", R, updated=g.updated) for i, g in state.items()}
        if all(g.updated and g.available for g in state.values()):
            break
    assert all(g.updated and g.available for g in state.values())


@pytest.mark.parametrize(("attempts", "expected"), [(0, 0.0), (1, 10.0), (2, 20.0), (3, 40.0), (10, 300.0)])
def test_the_backoff_doubles_up_to_a_cap(attempts: int, expected: float) -> None:
    assert next_backoff(10.0, attempts) == expected


def test_absent_groups_are_created_not_deleted() -> None:
    observed = {0: GroupObservation(0, "g0", A), 1: GroupObservation(1, "g1", R)}
    assert plan_groups(limits(2), observed) == GroupPlan(keep=(0, 1))
