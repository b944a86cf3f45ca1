"""The children as the watches last delivered them, filed by GrokDeployment (event loop only).

Data flow: child_watch.py's threads hand every LIST and every watch event to the event loop, where
`listed()` and `changed()` keep a slim copy (child_cache.slim: no managedFields, a Pod without its
spec) of each child under the (namespace, name) of the GrokDeployment its `LABEL_DEPLOYMENT` label
names, by uid, and call `on_change(kind, key, object, gone)` for each change, which handlers.py
turns into a wake-up of that object's loop (and, for a Pod that is going, a note for the group
restart policy). Before each pass `ChildCache.observed()` reads one object's entries through
`index()`. A child without the label belongs to no GrokDeployment and is not kept.

Single owner: only the event loop reads or changes the store; an entry, once stored, is never
changed (a newer event replaces it), so a reconcile thread may read what `observed()` handed it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from grok_operator.child_cache import KINDS, Key, owner_key, slim

Obj = dict[str, Any]
#: (kind, GrokDeployment key, the child, whether it is gone).
OnChange = Callable[[str, Key, Obj, bool], None]


def _uid(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid", ""))


def _version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


class ChildStore:
    """kind -> GrokDeployment key -> uid -> slim child."""

    def __init__(self, on_change: OnChange) -> None:
        self._on_change = on_change
        self._children: dict[str, dict[Key, dict[str, Obj]]] = {kind: {} for kind in KINDS}
        #: (kind, uid) -> the key it is filed under (a relabelled child moves).
        self._filed: dict[tuple[str, str], Key] = {}

    def index(self, kind: str) -> Mapping[Key, Mapping[str, Obj]]:
        return self._children[kind]

    def changed(self, kind: str, event_type: str, body: Mapping[str, Any]) -> None:
        """One watch event (ADDED, MODIFIED or DELETED) of a child of `kind`; `body` is handed
        over (decoded for this event or list alone, nothing else holds it) and kept in part."""
        uid = _uid(body)
        key = owner_key(body)
        before = self._filed.get((kind, uid))
        if before is not None and (key != before or event_type == "DELETED"):
            self._drop(kind, before, uid, body)
        if key is None or event_type == "DELETED":
            return
        obj = slim({**body, "kind": kind}, private=True)  # decoded for this event alone
        self._children[kind].setdefault(key, {})[uid] = obj
        self._filed[(kind, uid)] = key
        self._on_change(kind, key, obj, False)

    def listed(self, kind: str, namespace: str | None, bodies: list[Obj]) -> None:
        """A LIST of `kind` in `namespace` (None: every namespace), its objects handed over: it
        replaces what the store held there; what it lacks is gone. Entries the list shows
        unchanged wake nobody."""
        listed: set[str] = set()
        for body in bodies:
            uid = _uid(body)
            listed.add(uid)
            key = self._filed.get((kind, uid))
            held = self._children[kind].get(key, {}).get(uid) if key is not None else None
            if held is None or _version(held) != _version(body) or key != owner_key(body):
                self.changed(kind, "ADDED", body)
        for (filed_kind, uid), key in list(self._filed.items()):
            if filed_kind == kind and uid not in listed and namespace in (None, key[0]):
                self._drop(kind, key, uid, self._children[kind][key][uid])

    def _drop(self, kind: str, key: Key, uid: str, last: Mapping[str, Any]) -> None:
        entries = self._children[kind].get(key, {})
        entries.pop(uid, None)
        if not entries:
            self._children[kind].pop(key, None)
        self._filed.pop((kind, uid), None)
        self._on_change(kind, key, dict(last), True)
