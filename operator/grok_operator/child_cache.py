"""GrokDeployments' children from the operator's own watches, not from LISTs on every pass.

Data flow: child_watch.py LISTs and then WATCHes the StatefulSets, Services, ConfigMaps, Pods and
NetworkPolicies that carry the operator's managed-by label (label-selected by the apiserver), and
child_store.py files a slim copy of each (`slim()`: no managedFields, a Pod without its spec) by
(namespace, GrokDeployment name). A GrokDeployment's first pass waits until its namespace's
children are listed, so the first pass after a restart already sees every child. Before each pass
the daemon, on the event loop that owns the store, calls `ChildCache.observed()`; that copies one
GrokDeployment's entries into an `Observed` the reconcile thread reads while the loop keeps
updating the store (single owner: the thread never touches it).

Writes the watch has not delivered yet: a pass that just applied a Service would otherwise see it
missing on the next pass (woken by the StatefulSet's event, which can overtake the Service's) and
apply it again. The reconcile thread records what it applied (the apiserver's answer) and what it
deleted in `Written`, under a lock; `observed()` prefers a recorded object whose resourceVersion
is newer than the watched one, hides recorded deletions, and drops each record once the watch has
caught up with it (or after `RECORD_SECONDS`, whichever comes first).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from grok_operator import constants as c
from grok_operator.kube import Observed

Obj = dict[str, Any]
#: (namespace, GrokDeployment name): what a child's `LABEL_DEPLOYMENT` label points at.
Key = tuple[str, str]
#: The kinds the cache holds, as kube.py names them.
KINDS = ("StatefulSet", "Service", "ConfigMap", "Pod", "NetworkPolicy")
#: How long a write is remembered at most: the watch delivers it well within this.
RECORD_SECONDS = 30.0


#: The only parts of a Pod's spec a pass reads (observe.py): a pod's spec is most of its size
#: and every pod event would otherwise copy it.
POD_SPEC_KEPT = ("schedulingGates", "nodeName")


def slim(body: Mapping[str, Any], *, private: bool = False) -> Obj:
    """What a pass reads of a watched object: without managedFields (the bulk of most objects),
    and for a Pod only its metadata, status and POD_SPEC_KEPT. A deep copy, made after the cut so
    the parts dropped are never copied, unless `private`: the caller holds the only reference to
    `body` (an object decoded for this one event) and gives it up."""
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    if body.get("kind") == "Pod":
        spec = body.get("spec") or {}
        kept: Obj = {
            "apiVersion": body.get("apiVersion"),
            "kind": "Pod",
            "metadata": meta,
            "spec": {key: spec[key] for key in POD_SPEC_KEPT if key in spec},
            "status": body.get("status") or {},
        }
    else:
        kept = {**body, "metadata": meta}
    return kept if private else copy.deepcopy(kept)


def owner_key(obj: Mapping[str, Any]) -> Key | None:
    """The GrokDeployment a child belongs to, by its labels; None when it names none."""
    meta = obj.get("metadata") or {}
    owner = (meta.get("labels") or {}).get(c.LABEL_DEPLOYMENT)
    namespace = meta.get("namespace")
    return (str(namespace), str(owner)) if namespace and owner else None


def _version(obj: Mapping[str, Any]) -> int:
    raw = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    return int(raw) if raw.isdigit() else -1


def _identity(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("name", "")), str(meta.get("uid", ""))


@dataclass
class _Record:
    applied: dict[tuple[str, str], tuple[Obj, float]] = field(default_factory=dict)
    #: (kind, uid) -> when deleted.
    deleted: dict[tuple[str, str], float] = field(default_factory=dict)


class Written:
    """Writes the reconcile threads made that the watches may not have delivered yet (locked)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[Key, _Record] = {}

    def applied(self, obj: Mapping[str, Any], now: float | None = None) -> None:
        meta = obj.get("metadata") or {}
        key = owner_key(obj)
        if key is None:
            return
        with self._lock:
            record = self._records.setdefault(key, _Record())
            record.applied[(str(obj.get("kind", "")), str(meta.get("name", "")))] = (
                slim(obj),
                time.monotonic() if now is None else now,
            )

    def deleted(self, key: Key, kind: str, uid: str, now: float | None = None) -> None:
        with self._lock:
            self._records.setdefault(key, _Record()).deleted[(kind, uid)] = (
                time.monotonic() if now is None else now
            )

    def forget(self, key: Key) -> None:
        with self._lock:
            self._records.pop(key, None)

    def pending(self) -> int:
        """Records not yet confirmed by a watch (tests and diagnostics)."""
        with self._lock:
            return sum(len(r.applied) + len(r.deleted) for r in self._records.values())

    def merge(self, key: Key, kind: str, watched: Iterable[Obj], now: float | None = None) -> list[Obj]:
        """`watched` objects of `kind` for `key`, corrected by this operator's unconfirmed writes."""
        now = time.monotonic() if now is None else now
        horizon = now - RECORD_SECONDS
        seen = list(watched)
        with self._lock:
            record = self._records.get(key)
            if record is None:
                return seen
            uids = {_identity(o)[1] for o in seen}
            for (k, uid), at in list(record.deleted.items()):
                if k == kind and (uid not in uids or at < horizon):
                    del record.deleted[(k, uid)]  # the watch saw it go (or long enough ago)
            gone = {uid for (k, uid) in record.deleted if k == kind}
            out = {_identity(o)[0]: o for o in seen if _identity(o)[1] not in gone}
            for (k, name), (obj, at) in list(record.applied.items()):
                if k != kind:
                    continue
                live = out.get(name)
                if at < horizon or (live is not None and _version(live) >= _version(obj)):
                    del record.applied[(k, name)]  # the watch caught up
                elif _identity(obj)[1] not in gone:
                    out[name] = obj
            if not record.applied and not record.deleted:
                del self._records[key]
            return list(out.values())


class ChildCache:
    """Reads the watch-fed store (on the event loop only) and the `Written` records into `Observed`."""

    def __init__(self) -> None:
        self.written = Written()

    def observed(self, key: Key, index: Callable[[str], Mapping[Key, Mapping[str, Obj]]]) -> Observed:
        """One GrokDeployment's children; call on the event loop that owns the store whose
        `index(kind)` gives kind's children by GrokDeployment, then by uid.

        The objects are the store's own copies, never changed after they are stored, so the
        reconcile thread may read them while the loop replaces entries."""

        def merged(kind: str) -> list[Obj]:
            held = index(kind).get(key)
            return self.written.merge(key, kind, list(held.values()) if held is not None else [])

        def by_name(kind: str) -> dict[str, Obj]:
            return {o["metadata"]["name"]: o for o in merged(kind)}

        return Observed(
            statefulsets=by_name("StatefulSet"),
            services=by_name("Service"),
            config_maps=by_name("ConfigMap"),
            pods=merged("Pod"),
            network_policies=by_name("NetworkPolicy"),
        )
