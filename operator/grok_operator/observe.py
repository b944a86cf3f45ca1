"""Classify observed replica groups (pure): from live StatefulSets and pods to one `GroupState`
per group, with the reason a user should read.

Data flow: the I/O layer lists the StatefulSets and pods labelled with the GrokDeployment's name
(plain dicts, as the apiserver returns them) → `observe_groups()` → `GroupObservation`s for the
planner (what to do next) and the status report (what to tell the user).

All-or-nothing groups: jax.distributed cannot re-admit one lost process, so a group is FAILED
when any of its pods restarted, failed, or disappeared while its siblings kept running. Which
restarts count is the group restart policy's choice (LeaderWorkerSet's names, restart_policy.py):
the caller passes `restart_baseline` (restarts at or below a pod's baseline do not count) or
`ignore_restarts`. A
disappearance is seen three ways: the watch reported the deletion (`lost_pods`, the fast path), the
pod is still terminating, or, after an operator restart, a pod was created well after its siblings
became ready (a replacement the StatefulSet controller made on its own).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from grok_operator import constants as c

Obj = Mapping[str, Any]


class GroupState(enum.StrEnum):
    ABSENT = "Absent"
    RECREATING = "Recreating"
    FAILED = "Failed"
    UNSCHEDULABLE = "Unschedulable"
    #: Short of pods the StatefulSet controller cannot create (its FailedCreate Events: a missing
    #: ServiceAccount or PriorityClass, a quota, an admission webhook); set by dependencies.py.
    POD_CREATION_FAILED = "PodCreationFailed"
    #: Kueue holds the group's pods (its admission scheduling gate) until it admits the group whole.
    WAITING_ADMISSION = "WaitingForAdmission"
    LOADING = "Loading"
    READY = "Ready"


@dataclass(frozen=True)
class GroupObservation:
    """What one replica group looks like right now."""

    index: int
    name: str
    state: GroupState
    #: Every live pod carries the current pod-template hash (vacuously true with no pods yet).
    updated: bool = True
    ready_hosts: int = 0
    message: str = ""
    #: For FAILED groups: the failure was a crashing container (vs. a lost or replaced pod).
    crashed: bool = False
    #: Names of the group's pods that are not terminating (what recreating the group deletes).
    live_pods: tuple[str, ...] = ()
    live_pod_uids: tuple[str, ...] = ()
    #: Container restarts of each live pod (same order), the baseline a restart policy keeps.
    live_pod_restarts: tuple[int, ...] = ()
    #: The StatefulSet's render hash, to decide whether it needs a write.
    statefulset_hash: str = ""

    @property
    def exists(self) -> bool:
        return self.state is not GroupState.ABSENT

    @property
    def available(self) -> bool:
        return self.state is GroupState.READY


@dataclass(frozen=True)
class PodFacts:
    """The parts of a pod the classification reads."""

    name: str
    uid: str
    created: datetime | None
    terminating: bool
    phase: str
    ready: bool
    ready_since: datetime | None
    template_hash: str
    restarts: int
    unschedulable_message: str | None
    last_failure: str = ""
    waiting_reasons: tuple[str, ...] = field(default_factory=tuple)
    #: Kueue's admission scheduling gate is on the pod: its group is not admitted (yet).
    admission_gated: bool = False
    #: The Kueue pod group (= Workload name) the pod belongs to; "" without a queue.
    pod_group: str = ""


#: Waiting reasons whose message names what is missing or wrong (a Secret, a ConfigMap, the image).
_EXPLAINED_WAITING = frozenset(
    {
        "CreateContainerConfigError",
        "CreateContainerError",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
    }
)


def _time(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def pod_facts(pod: Obj) -> PodFacts:
    meta = pod.get("metadata", {})
    status = pod.get("status", {}) or {}
    conditions = {cond.get("type"): cond for cond in status.get("conditions", []) or []}
    ready = conditions.get("Ready", {})
    scheduled = conditions.get("PodScheduled", {})
    unschedulable = None
    if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        unschedulable = str(scheduled.get("message", "the scheduler cannot place it"))
    restarts = 0
    failure = ""
    waiting: list[str] = []
    for container in status.get("containerStatuses", []) or []:
        restarts += int(container.get("restartCount", 0) or 0)
        terminated = (container.get("lastState") or {}).get("terminated") or (
            container.get("state") or {}
        ).get("terminated")
        if terminated:
            said = str(terminated.get("message") or "").strip()  # the worker's own words, if any
            failure = (
                f"container {container.get('name')} exited with code {terminated.get('exitCode')}"
                f" ({terminated.get('reason', 'Error')})" + (f": {said[-600:]}" if said else "")
            )
        waiting_state = (container.get("state") or {}).get("waiting") or {}
        reason = waiting_state.get("reason")
        if reason in _EXPLAINED_WAITING and waiting_state.get("message"):
            waiting.append(f"{reason}: {str(waiting_state['message'])[:300]}")
        elif reason:
            waiting.append(str(reason))
    return PodFacts(
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        created=_time(meta.get("creationTimestamp")),
        terminating=bool(meta.get("deletionTimestamp")),
        phase=str(status.get("phase", "")),
        ready=ready.get("status") == "True",
        ready_since=_time(ready.get("lastTransitionTime")) if ready.get("status") == "True" else None,
        template_hash=str((meta.get("labels") or {}).get(c.LABEL_TEMPLATE_HASH, "")),
        restarts=restarts,
        unschedulable_message=unschedulable,
        last_failure=failure,
        waiting_reasons=tuple(waiting),
        admission_gated=any(
            gate.get("name") == c.KUEUE_ADMISSION_GATE
            for gate in (pod.get("spec") or {}).get("schedulingGates") or []
        ),
        pod_group=str((meta.get("labels") or {}).get(c.KUEUE_POD_GROUP_NAME_LABEL, "")),
    )


def gated_pod_groups(pods: Iterable[Obj]) -> list[str]:
    """Kueue pod groups (Workload names) with a live pod still behind the admission gate, sorted."""
    facts = (pod_facts(p) for p in pods)
    return sorted({f.pod_group for f in facts if f.admission_gated and f.pod_group and not f.terminating})


#: A pod created this long after a sibling became ready is a replacement, not part of the group's
#: original burst of creations (the StatefulSet controller can lag behind under load).
REPLACEMENT_GRACE = timedelta(seconds=30)


def _failure(
    live: list[PodFacts], lost: list[PodFacts], counted: Mapping[str, int] | None
) -> tuple[str, bool] | None:
    """Why a group is broken (message, crashed), or None when it is not. `counted`: the restarts
    that count, by pod uid (None: all of them)."""
    for pod in live:
        if pod.phase == "Failed":
            return f"pod {pod.name} failed: {pod.last_failure or 'phase Failed'}", True
        restarts = pod.restarts if counted is None else counted.get(pod.uid, 0)
        if restarts > 0:
            detail = f": {pod.last_failure}" if pod.last_failure else ""
            return f"pod {pod.name} restarted {restarts} time(s){detail}", True
    if lost and live:
        return f"pod {lost[0].name} was deleted while the rest of its group kept running", False
    ready_times = [p.ready_since for p in live if p.ready_since is not None]
    for pod in live:
        if pod.created is not None and any(pod.created > t + REPLACEMENT_GRACE for t in ready_times):
            return f"pod {pod.name} was replaced after its group had become ready", False
    return None


def observe_group(
    index: int,
    name: str,
    statefulset: Obj | None,
    pods: Iterable[Obj],
    *,
    hosts: int,
    template_hash: str,
    deleted_uids: frozenset[str] = frozenset(),
    lost_pods: tuple[str, ...] = (),
    admission: Mapping[str, str] | None = None,
    restart_baseline: Mapping[str, int] | None = None,
    ignore_restarts: bool = False,
) -> GroupObservation:
    """Classify one group. `deleted_uids` are pods the operator itself deleted (not failures);
    `lost_pods` are pods of this group the watch saw deleted by someone else since it last formed;
    `admission` maps a Kueue pod group (Workload) name to Kueue's reason for not admitting it.
    Container restarts count above `restart_baseline[uid]` (0 for pods not in it; None: every
    restart counts), or not at all with `ignore_restarts`.
    With `hosts` 0 or no `template_hash` (an invalid spec), the StatefulSet's own are used."""
    if statefulset is None:
        return GroupObservation(index, name, GroupState.ABSENT)
    sts_spec = statefulset.get("spec") or {}
    if hosts <= 0:  # the spec is unusable: judge the group by what its StatefulSet asks for
        hosts = int(sts_spec.get("replicas") or 0)
    if not template_hash:
        template_hash = str(
            (((sts_spec.get("template") or {}).get("metadata") or {}).get("labels") or {}).get(
                c.LABEL_TEMPLATE_HASH, ""
            )
        )
    sts_hash = str(
        ((statefulset.get("metadata") or {}).get("annotations") or {}).get(c.ANNOTATION_RENDER_HASH, "")
    )
    facts = [pod_facts(p) for p in pods]
    live = [p for p in facts if not p.terminating and p.uid not in deleted_uids]
    ours = [p for p in facts if p.uid in deleted_uids]
    lost = [p for p in facts if p.terminating and p.uid not in deleted_uids]
    common: dict[str, Any] = {
        "updated": all(p.template_hash == template_hash for p in live),
        "ready_hosts": sum(p.ready for p in live),
        "live_pods": tuple(p.name for p in live),
        "live_pod_uids": tuple(p.uid for p in live),
        "live_pod_restarts": tuple(p.restarts for p in live),
        "statefulset_hash": sts_hash,
    }
    if (statefulset.get("metadata") or {}).get("deletionTimestamp"):
        return GroupObservation(
            index, name, GroupState.RECREATING, message="StatefulSet is being deleted", **common
        )
    if ours:
        return GroupObservation(
            index, name, GroupState.RECREATING, message=f"waiting for {len(ours)} old pod(s) to go", **common
        )
    counted: dict[str, int] | None = None
    if ignore_restarts:
        counted = {}
    elif restart_baseline is not None:
        counted = {p.uid: p.restarts - restart_baseline.get(p.uid, 0) for p in live}
    failure = _failure(live, lost, counted)
    if failure is None and lost_pods and live:
        failure = (f"pod {lost_pods[0]} was deleted while the rest of its group kept running", False)
    if failure is not None:
        message, crashed = failure
        return GroupObservation(index, name, GroupState.FAILED, message=message, crashed=crashed, **common)
    if lost:
        return GroupObservation(
            index,
            name,
            GroupState.RECREATING,
            message=f"waiting for {len(lost)} pod(s) to terminate",
            **common,
        )
    gated = [p for p in live if p.admission_gated]
    if gated:
        workload = gated[0].pod_group
        why = (admission or {}).get(workload) or "Kueue has not reported a reason yet"
        return GroupObservation(
            index,
            name,
            GroupState.WAITING_ADMISSION,
            message=f"waiting for admission by Kueue (Workload {workload}): {why}",
            **common,
        )
    for pod in live:
        if pod.unschedulable_message is not None:
            return GroupObservation(
                index,
                name,
                GroupState.UNSCHEDULABLE,
                message=f"pod {pod.name} cannot be scheduled: {pod.unschedulable_message}",
                **common,
            )
    if len(live) == hosts and all(p.ready for p in live):
        return GroupObservation(index, name, GroupState.READY, **common)
    waiting = sorted({reason for p in live for reason in p.waiting_reasons})
    detail = f" ({', '.join(waiting)})" if waiting else ""
    message = f"{common['ready_hosts']}/{hosts} hosts ready{detail}"
    return GroupObservation(index, name, GroupState.LOADING, message=message, **common)
