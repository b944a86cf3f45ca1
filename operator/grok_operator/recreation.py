"""Which pods still belong to a group's failed incarnation after the operator replaced it (pure).

Recreating a group deletes the pods the pass observed. A pod the StatefulSet controller created
between that observation and the deletions (the replacement of a pod that had just vanished) is
not among them: it joined the old incarnation, would fail with it, and would make the operator
recreate the group a second time. So the recreation remembers when it deleted (`recreated_at`, the
pass's wall-clock time, in the API's second-resolution format), and later passes delete, as part
of the same recreation (no Event, no back-off), every live pod of the group created before then.

The comparison is at the API's one-second resolution and against the operator's clock: a sibling
created in the same second as the deletions is not caught (the old behaviour), and an operator
clock ahead of the apiserver's can delete a fresh replacement once more (a pod not yet loaded).

Data flow: the group's listed pods + `recreated_at` + the uids the operator already deleted →
`leftovers()` → (name, uid) of the pods to delete too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from grok_operator import constants as c


def leftovers(
    pods: Iterable[Mapping[str, Any]], group: str, recreated_at: str, deleted_uids: Iterable[str]
) -> list[tuple[str, str]]:
    """Live pods of `group` created strictly before `recreated_at` that the operator did not delete."""
    if not recreated_at:
        return []
    done = set(deleted_uids)
    out = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        if (meta.get("labels") or {}).get(c.LABEL_GROUP) != group or meta.get("deletionTimestamp"):
            continue
        uid, created = str(meta.get("uid", "")), str(meta.get("creationTimestamp", ""))
        if uid and uid not in done and created and created < recreated_at:
            out.append((str(meta.get("name", "")), uid))
    return sorted(out)
