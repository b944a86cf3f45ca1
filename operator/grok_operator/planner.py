"""The rollout planner (pure): what should happen next to the replica groups, given what exists.

Data flow: desired replicas + rollout limits + failure policy + one `GroupObservation` per
existing group (observe.py) → `GroupPlan`: which groups should exist (their StatefulSets are then
applied with the current template), which to delete, which to recreate because they failed, and
which outdated groups to roll now. The I/O layer carries the plan out; nothing here talks to the API.

Rules:
- Groups 0..replicas-1 always exist; scaling adds or removes whole groups (highest index first).
- A failed group is recreated whole (all its pods deleted at once), after a per-group back-off.
- A spec change rolls groups: an outdated group is rolled (its pods deleted; the StatefulSet,
  already updated with OnDelete strategy, recreates them from the new template) only while at least
  replicas - maxUnavailable groups stay ready. Outdated groups that are not ready cost nothing to roll.
- maxSurge extra groups (indices replicas..replicas+maxSurge-1) are created, already up to date,
  while a rollout is in progress, and removed once every regular group is up to date and ready.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from grok_operator.observe import GroupObservation, GroupState


@dataclass(frozen=True)
class RolloutLimits:
    replicas: int
    max_unavailable: int
    max_surge: int
    recreate_failed: bool = True


@dataclass(frozen=True)
class GroupPlan:
    """The decisions of one reconcile pass, by group index."""

    #: Groups whose StatefulSet (and headless Service) should exist, sorted.
    keep: tuple[int, ...]
    #: Existing groups to remove entirely (scale-down, surge clean-up).
    delete: tuple[int, ...] = ()
    #: Failed groups to recreate now, with the reason (for the Event).
    recreate: tuple[tuple[int, str], ...] = ()
    #: Outdated groups to roll now.
    roll: tuple[int, ...] = ()
    #: Failed groups whose recreation waits for their back-off.
    backing_off: tuple[int, ...] = ()
    #: Why the rollout is not moving faster, for the Progressing condition.
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def idle(self) -> bool:
        return not (self.delete or self.recreate or self.roll)


def plan_groups(
    limits: RolloutLimits,
    groups: Mapping[int, GroupObservation],
    *,
    now: float = 0.0,
    retry_at: Mapping[int, float] | None = None,
) -> GroupPlan:
    """Decide the next step. `retry_at[i]` is when failed group i may be recreated again."""
    retry_at = retry_at or {}
    n = limits.replicas
    existing = {i: g for i, g in groups.items() if g.exists}
    regular = [existing[i] for i in range(n) if i in existing]
    rollout_active = any(not g.updated for g in regular)
    settled = len(regular) == n and all(g.updated and g.available for g in regular)

    keep = set(range(n))
    delete: list[int] = []
    for i in sorted(existing):
        if i < n:
            continue
        is_surge = i < n + limits.max_surge
        if is_surge and (rollout_active or not settled):
            keep.add(i)
        else:
            delete.append(i)
    if rollout_active:
        keep.update(range(n, n + limits.max_surge))

    recreate: list[tuple[int, str]] = []
    backing_off: list[int] = []
    for i in sorted(keep & set(existing)):
        group = existing[i]
        if group.state is not GroupState.FAILED or not limits.recreate_failed:
            continue
        if now >= retry_at.get(i, 0.0):
            recreate.append((i, group.message))
        else:
            backing_off.append(i)
    recreating = {i for i, _ in recreate}

    available = sum(1 for i in keep if i in existing and existing[i].available and i not in recreating)
    min_available = n - limits.max_unavailable
    outdated = [g for g in regular if not g.updated and g.index not in recreating]
    # Outdated groups that are already down cost nothing; roll ready ones from the highest index down.
    busy = {GroupState.RECREATING, GroupState.FAILED} if limits.recreate_failed else {GroupState.RECREATING}
    free = [g for g in outdated if not g.available and g.state not in busy]
    costly = sorted((g for g in outdated if g.available), key=lambda g: -g.index)
    roll = [g.index for g in free]
    notes: list[str] = []
    for group in costly:
        if available - 1 >= min_available:
            roll.append(group.index)
            available -= 1
        else:
            notes.append(
                f"{len(costly) - len([i for i in roll if existing[i].available])} outdated group(s) wait: "
                f"{available} of {n} groups ready and maxUnavailable is {limits.max_unavailable}"
            )
            break
    return GroupPlan(
        keep=tuple(sorted(keep)),
        delete=tuple(delete),
        recreate=tuple(recreate),
        roll=tuple(sorted(roll)),
        backing_off=tuple(backing_off),
        notes=tuple(notes),
    )


def next_backoff(base_seconds: float, attempts: int, cap_seconds: float = 300.0) -> float:
    """Seconds to wait before recreating a group that has already been recreated `attempts` times."""
    if attempts <= 0:
        return 0.0
    return float(min(cap_seconds, base_seconds * 2 ** (attempts - 1)))
