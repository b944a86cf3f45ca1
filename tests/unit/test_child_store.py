"""The watch-fed store (child_store.py): children filed by the GrokDeployment their label names,
slimmed; a LIST replaces what the store held in its namespace (what it lacks is gone) and wakes
nobody for what it shows unchanged; a relabelled child moves; every change is reported."""

from __future__ import annotations

from typing import Any

from grok_operator import constants as c
from grok_operator.child_store import ChildStore

Change = tuple[str, tuple[str, str], str, bool]


def _child(
    name: str, owner: str | None, *, ns: str = "ns", version: str = "1", uid: str | None = None
) -> dict[str, Any]:
    labels = {c.LABEL_DEPLOYMENT: owner} if owner else {}
    meta = {
        "name": name,
        "namespace": ns,
        "uid": uid or f"uid-{name}",
        "resourceVersion": version,
        "labels": labels,
    }
    return {
        "metadata": {**meta, "managedFields": [{"manager": "x"}]},
        "spec": {"containers": []},
        "status": {},
    }


def _store() -> tuple[ChildStore, list[Change]]:
    changes: list[Change] = []
    store = ChildStore(
        lambda kind, key, obj, gone: changes.append((kind, key, obj["metadata"]["name"], gone))
    )
    return store, changes


def test_children_are_filed_by_their_grokdeployment_and_slimmed() -> None:
    store, changes = _store()
    store.changed("Pod", "ADDED", _child("a-0-0", "a"))
    store.changed("Pod", "ADDED", _child("stray", None))
    held = store.index("Pod")[("ns", "a")]["uid-a-0-0"]
    assert "managedFields" not in held["metadata"]
    assert "containers" not in held["spec"]
    assert held["kind"] == "Pod"
    assert ("ns", "") not in store.index("Pod")
    assert len(store.index("Pod")) == 1
    assert changes == [("Pod", ("ns", "a"), "a-0-0", False)]


def test_a_deleted_child_goes_and_a_relabelled_one_moves() -> None:
    store, changes = _store()
    store.changed("Service", "ADDED", _child("s", "a"))
    store.changed("Service", "MODIFIED", _child("s", "b", version="2"))
    assert ("ns", "a") not in store.index("Service")
    assert list(store.index("Service")[("ns", "b")]) == ["uid-s"]
    store.changed("Service", "DELETED", _child("s", "b", version="3"))
    assert store.index("Service") == {}
    assert [(key[1], gone) for _, key, _, gone in changes] == [
        ("a", False),
        ("a", True),
        ("b", False),
        ("b", True),
    ]


def test_a_list_replaces_its_namespace_and_reports_only_what_changed() -> None:
    store, changes = _store()
    store.changed("StatefulSet", "ADDED", _child("a-0", "a"))
    store.changed("StatefulSet", "ADDED", _child("b-0", "b"))
    store.changed("StatefulSet", "ADDED", _child("o-0", "o", ns="other"))
    changes.clear()
    store.listed("StatefulSet", "ns", [_child("a-0", "a"), _child("c-0", "c")])
    assert sorted(key for key in store.index("StatefulSet")) == [("ns", "a"), ("ns", "c"), ("other", "o")]
    assert sorted((key[1], gone) for _, key, _, gone in changes) == [("b", True), ("c", False)]
    changes.clear()
    store.listed("StatefulSet", None, [_child("a-0", "a", version="9")])
    assert list(store.index("StatefulSet")) == [("ns", "a")]
    assert sorted((key[1], gone) for _, key, _, gone in changes) == [("a", False), ("c", True), ("o", True)]


def test_the_store_keeps_a_handed_over_event_object_without_copying_it() -> None:
    store, _ = _store()
    body = _child("a-0", "a")
    body["status"] = {"readyReplicas": 1}
    store.changed("StatefulSet", "ADDED", body)
    held = store.index("StatefulSet")[("ns", "a")]["uid-a-0"]
    assert held["status"] is body["status"]  # decoded for this event alone: slimmed, not copied
    assert "managedFields" not in held["metadata"]
