"""Kueue's own words on why a replica group is not admitted yet (pure).

Data flow: observe.gated_pod_groups() names the pod groups whose pods still carry Kueue's
admission gate -> the I/O layer reads each one's Workload (KubeApi.workload; Kueue names the
Workload of a pod group after the group) -> `admission_message()` turns its conditions into one
line -> observe_group() puts it in the group's WaitingForAdmission message and the status.

Kueue's conditions, in the order they tell the story: Evicted (preempted, or deactivated),
QuotaReserved=False (no quota: Kueue says which resource and how much is missing),
Admitted=False (quota reserved, admission checks pending).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: When the Workload cannot be read for lack of RBAC: what to grant.
NOT_PERMITTED = (
    "the operator may not read Kueue Workloads to tell why; grant it get on workloads.kueue.x-k8s.io "
    "(chart value kueue.enabled=true)"
)
#: When the pods are gated but Kueue has not made their Workload yet (or it is gone).
NO_WORKLOAD = "Kueue has not created the group's Workload yet"


def _condition(workload: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for condition in (workload.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return {}


def _words(condition: Mapping[str, Any]) -> str:
    reason = str(condition.get("reason") or "")
    message = str(condition.get("message") or "").strip()
    return f"{reason}: {message}" if reason and message else reason or message


def admission_message(workload: Mapping[str, Any] | None) -> str:
    """One line saying why Kueue has not admitted the Workload (or that it has, if it has)."""
    if workload is None:
        return NO_WORKLOAD
    evicted = _condition(workload, "Evicted")
    reserved = _condition(workload, "QuotaReserved")
    admitted = _condition(workload, "Admitted")
    if evicted.get("status") == "True" and reserved.get("status") != "True":
        pending = f"; now {_words(reserved)}" if reserved else ""
        return f"evicted ({_words(evicted)}){pending}"
    if reserved.get("status") != "True":
        return _words(reserved) or "queued, not yet considered by Kueue"
    if admitted.get("status") != "True":
        return f"quota reserved, not admitted yet: {_words(admitted) or 'admission checks pending'}"
    return "admitted; Kueue is removing the scheduling gates"
