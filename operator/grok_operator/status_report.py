"""Compute the status to report (pure): phase, counters, conditions and the memory plan.

Data flow: validation problems, or the capacity plan and the observed groups (observe.py) and the
planner's decisions → `GrokDeploymentStatus`. Conditions keep their lastTransitionTime while their
status does not change, so recomputing an unchanged state yields an identical status, and the
I/O layer (which writes only differences) writes nothing.

Which story wins when several are true: an invalid spec, then too little device memory, then pods
the StatefulSet controller cannot create or the scheduler cannot place, then crash loops, then groups waiting for Kueue's admission (queued on
purpose: Progressing, not Degraded), then a rollout, then loading.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from grok_operator.api import Condition, GrokDeploymentStatus, GroupStatus, MemoryPlan
from grok_operator.capacity import MemoryPlan as CapacityPlan
from grok_operator.constants import ConditionType, Phase, Reason
from grok_operator.observe import GroupObservation, GroupState
from grok_operator.planner import GroupPlan
from grok_operator.validation import SpecProblem


@dataclass(frozen=True)
class ReportInputs:
    generation: int
    now: str
    previous_conditions: Sequence[Mapping[str, Any]]
    endpoint: str = ""
    selector: str = ""


def memory_plan_status(plan: CapacityPlan) -> MemoryPlan:
    return MemoryPlan(
        devices_per_replica=plan.devices,
        device_memory_bytes=plan.device_memory_bytes,
        weights_bytes_per_device=plan.weights_bytes,
        kv_cache_bytes_per_device=plan.kv_cache_bytes,
        headroom_bytes_per_device=plan.headroom_bytes,
        required_bytes_per_device=plan.required_bytes,
        fits=plan.fits,
        summary=plan.summary(),
    )


def _conditions(
    inputs: ReportInputs,
    ready: tuple[bool, str, str],
    progressing: tuple[bool, str, str],
    degraded: tuple[bool, str, str],
) -> list[Condition]:
    previous = {str(c.get("type")): c for c in inputs.previous_conditions}
    out = []
    for kind, (status, reason, message) in (
        (ConditionType.READY, ready),
        (ConditionType.PROGRESSING, progressing),
        (ConditionType.DEGRADED, degraded),
    ):
        text = "True" if status else "False"
        before = previous.get(kind, {})
        since = str(before.get("lastTransitionTime", "")) if before.get("status") == text else ""
        out.append(
            Condition(
                type=kind,
                status=text,
                reason=reason,
                message=message,
                last_transition_time=since or inputs.now,
                observed_generation=inputs.generation,
            )
        )
    return out


def invalid_status(
    inputs: ReportInputs,
    problems: Sequence[SpecProblem],
    groups: Mapping[int, GroupObservation],
    *,
    reason: str = Reason.INVALID_SPEC,
) -> GrokDeploymentStatus:
    """The spec cannot be rolled out (`reason`: InvalidSpec, or RefusedByApiServer for a child the
    apiserver refused). Groups already running keep serving, and so keep the endpoint."""
    message = "; ".join(str(p) for p in problems)
    return GrokDeploymentStatus(
        observed_generation=inputs.generation,
        phase=Phase.INVALID,
        conditions=_conditions(
            inputs,
            (False, reason, message),
            (False, reason, "nothing is rolled out until the spec is fixed"),
            (True, reason, message),
        ),
        endpoint=inputs.endpoint if any(g.available for g in groups.values()) else "",
        selector=inputs.selector,
        **_counters(groups),
    )


def infeasible_status(
    inputs: ReportInputs, plan: CapacityPlan, groups: Mapping[int, GroupObservation]
) -> GrokDeploymentStatus:
    message = f"not enough GPU memory: {plan.summary()}; {plan.advice()}"
    return GrokDeploymentStatus(
        observed_generation=inputs.generation,
        phase=Phase.INFEASIBLE,
        conditions=_conditions(
            inputs,
            (False, Reason.INSUFFICIENT_DEVICE_MEMORY, message),
            (False, Reason.INSUFFICIENT_DEVICE_MEMORY, "no pods are created for a spec that cannot fit"),
            (True, Reason.INSUFFICIENT_DEVICE_MEMORY, message),
        ),
        memory_plan=memory_plan_status(plan),
        selector=inputs.selector,
        **_counters(groups),
    )


def blocked_status(
    inputs: ReportInputs, reason: str, message: str, groups: Mapping[int, GroupObservation]
) -> GrokDeploymentStatus:
    """The cluster refused a child for lack of room (shortages.py): Pending until it has room."""
    return GrokDeploymentStatus(
        observed_generation=inputs.generation,
        phase=Phase.PENDING,
        conditions=_conditions(
            inputs,
            (False, reason, message),
            (True, reason, "waiting for the cluster to have room"),
            (True, reason, message),
        ),
        selector=inputs.selector,
        **_counters(groups),
    )


def _counters(groups: Mapping[int, GroupObservation]) -> dict[str, Any]:
    existing = [g for g in groups.values() if g.exists]
    return {
        "replicas": len(existing),
        "ready_replicas": sum(g.available for g in existing),
        "updated_replicas": sum(g.updated for g in existing),
        "groups": [
            GroupStatus(
                name=g.name,
                state=str(g.state),
                ready_hosts=g.ready_hosts,
                updated=g.updated,
                message=g.message,
            )
            for g in sorted(existing, key=lambda g: g.index)
        ],
    }


#: Group states that wait on the cluster rather than on time, and the reason each reports.
_STUCK = {
    GroupState.POD_CREATION_FAILED: Reason.POD_CREATION_FAILED,
    GroupState.UNSCHEDULABLE: Reason.UNSCHEDULABLE,
}


def _stuck_reason(stuck: Sequence[GroupObservation]) -> str:
    """PodCreationFailed when any group's pods cannot even be created (the fix is a missing object,
    named in the message), else Unschedulable."""
    if any(g.state is GroupState.POD_CREATION_FAILED for g in stuck):
        return Reason.POD_CREATION_FAILED
    return Reason.UNSCHEDULABLE


def serving_status(
    inputs: ReportInputs,
    *,
    replicas: int,
    capacity: CapacityPlan,
    groups: Mapping[int, GroupObservation],
    plan: GroupPlan,
) -> GrokDeploymentStatus:
    """Status of a valid, feasible spec from the observed groups and this pass's decisions."""
    regular = [groups[i] for i in range(replicas) if i in groups and groups[i].exists]
    existing = [g for g in groups.values() if g.exists]
    ready_regular = sum(g.available and g.updated for g in regular)
    ready_total = sum(g.available for g in existing)
    stuck = [g for g in existing if g.state in _STUCK]
    queued = [g for g in existing if g.state is GroupState.WAITING_ADMISSION]
    failed = [g for g in existing if g.state is GroupState.FAILED or (g.index in dict(plan.recreate))]
    outdated = [g for g in regular if not g.updated]
    settled = ready_regular == replicas and len(existing) == replicas

    if replicas == 0 and not existing:
        phase, reason, message = Phase.SCALED_TO_ZERO, Reason.SCALED_TO_ZERO, "replicas is 0"
        ready = (True, reason, message)
        progressing = (False, reason, message)
        degraded = (False, Reason.AS_EXPECTED, "")
    elif settled:
        message = f"{replicas} of {replicas} replica groups ready"
        phase = Phase.READY
        ready = (True, Reason.READY, message)
        progressing = (False, Reason.READY, "rollout complete")
        degraded = (False, Reason.AS_EXPECTED, "")
    else:
        summary = f"{ready_total} of {replicas} replica groups ready"
        if stuck:
            phase, reason = Phase.UNSCHEDULABLE, _stuck_reason(stuck)
            detail = "; ".join(g.message for g in stuck)
        elif failed:
            phase, reason = Phase.DEGRADED, Reason.CRASH_LOOPING
            detail = "; ".join(f"group {g.name}: {g.message}, recreating the whole group" for g in failed)
        elif queued:
            phase, reason = Phase.QUEUED, Reason.WAITING_FOR_ADMISSION
            detail = "; ".join(f"group {g.name}: {g.message}" for g in queued)
        elif outdated:
            phase, reason = Phase.ROLLING, Reason.ROLLING
            detail = f"{len(outdated)} group(s) still run an old pod template"
            if plan.notes:
                detail += "; " + "; ".join(plan.notes)
        elif len(regular) != replicas or len(existing) != replicas:
            phase, reason = Phase.LOADING, Reason.SCALING
            detail = f"scaling to {replicas} replica groups (now {len(existing)})"
        else:
            phase, reason = Phase.LOADING, Reason.LOADING
            detail = (
                "; ".join(f"group {g.name}: {g.message}" for g in existing if not g.available) or "starting"
            )
        message = f"{summary}: {detail}"
        full = ready_total >= replicas and not outdated
        ready = (True, Reason.READY, message) if full else (False, reason, message)
        progressing = (reason not in _STUCK.values(), reason, message)
        is_degraded = reason in (*_STUCK.values(), Reason.CRASH_LOOPING)
        degraded = (
            is_degraded,
            reason if is_degraded else Reason.AS_EXPECTED,
            message if is_degraded else "",
        )
    return GrokDeploymentStatus(
        observed_generation=inputs.generation,
        phase=phase,
        conditions=_conditions(inputs, ready, progressing, degraded),
        endpoint=inputs.endpoint,
        selector=inputs.selector,
        memory_plan=memory_plan_status(capacity),
        **_counters(groups),
    )


def status_document(status: GrokDeploymentStatus) -> dict[str, Any]:
    """The status as it is stored (camelCase JSON)."""
    return status.model_dump(mode="json", by_alias=True)


def status_patch(live: Mapping[str, Any] | None, desired: GrokDeploymentStatus) -> dict[str, Any] | None:
    """A JSON merge patch of `.status` that makes `live` equal `desired` on our keys, or None when
    they already agree (keys other writers keep there, such as kopf's, are left alone)."""
    live = live or {}
    document = status_document(desired)
    patch = {key: value for key, value in document.items() if live.get(key) != value}
    return patch or None
