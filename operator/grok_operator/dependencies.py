"""Why a group's pods do not exist: the StatefulSet controller's own words (pure).

A StatefulSet whose pods the apiserver refuses (a missing ServiceAccount or PriorityClass, a quota,
an admission webhook) has no condition saying so; its controller posts FailedCreate Events on it.
Without them the group would read "0/2 hosts ready" forever.

Data flow: observed groups with fewer live pods than hosts → the reconcile lists the namespace's
FailedCreate Events once (`KubeApi.failed_creates`) → `creation_failures()` keeps, per StatefulSet
(matched by uid, so an earlier StatefulSet of the same name does not count), the latest message →
`explain()` turns such a group into POD_CREATION_FAILED with that message, which the status reports
(reason PodCreationFailed, phase Unschedulable).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from grok_operator.observe import GroupObservation, GroupState

#: A StatefulSet younger than this is normally still getting its pods: its Events are not read.
CREATE_GRACE = timedelta(seconds=5)


def short_of_pods(
    group: GroupObservation, hosts: int, statefulset: Mapping[str, Any] | None, now_iso: str
) -> bool:
    """A group whose StatefulSet exists (for a while) but has fewer pods than hosts, with nothing
    else to say about it."""
    if group.state is not GroupState.LOADING or len(group.live_pods) >= hosts or statefulset is None:
        return False
    created = str((statefulset.get("metadata") or {}).get("creationTimestamp") or "")
    if not created or not now_iso:
        return True
    return _time(now_iso) - _time(created) >= CREATE_GRACE


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def creation_failures(
    events: Iterable[Mapping[str, Any]], statefulset_uids: Mapping[str, str]
) -> dict[str, str]:
    """The latest FailedCreate message per StatefulSet name, for the StatefulSets given (name → uid)."""
    latest: dict[str, tuple[str, str]] = {}
    for event in events:
        involved = event.get("involvedObject") or {}
        name = str(involved.get("name", ""))
        if statefulset_uids.get(name) != involved.get("uid"):
            continue
        when = str(event.get("lastTimestamp") or event.get("eventTime") or "")
        if name not in latest or when >= latest[name][0]:
            latest[name] = (when, str(event.get("message", "")))
    return {name: message for name, (_, message) in latest.items()}


def explain(group: GroupObservation, failure: str) -> GroupObservation:
    return dataclasses.replace(
        group,
        state=GroupState.POD_CREATION_FAILED,
        message=f"the StatefulSet controller cannot create the pods of {group.name}: {failure}",
    )
