"""What wakes a GrokDeployment's loop (handlers.py) and what kopf is spared (runtime.py): its own
status write wakes nothing, anything else does; a Pod or StatefulSet change, or any child going,
wakes it; the no-op diff base builds nothing; kopf watches no child kind (the operator's own
watches do, child_watch.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from grok_operator import constants as c
from grok_operator.handlers import OperatorState
from grok_operator.reconcile import DeploymentMemory
from grok_operator.runtime import NoDiffBase, OperatorConfig, build

KEY = ("ns", "chat")


class _Api:
    """Stands in for KubeApi where no call is made."""


def _state() -> tuple[OperatorState, asyncio.Event]:
    state = OperatorState(api=_Api())  # type: ignore[arg-type]
    event = asyncio.Event()
    state.wakers[KEY] = event
    return state, event


def test_the_event_of_the_loops_own_status_write_wakes_nothing_any_other_does() -> None:
    state, event = _state()
    state.own_versions[KEY] = "41"
    state.wake_unless_own(*KEY, "41")
    assert not event.is_set()
    state.wake_unless_own(*KEY, "42")  # someone else's write (a spec edit, kubectl scale)
    assert event.is_set()
    event.clear()
    state.wake_unless_own(*KEY, None)
    assert event.is_set()


def test_an_object_without_a_status_write_yet_is_always_woken() -> None:
    state, event = _state()
    state.wake_unless_own(*KEY, "7")
    assert event.is_set()


def test_the_diff_base_is_never_built_fetched_or_stored() -> None:
    storage = NoDiffBase()
    body = kopf.Body({"metadata": {"name": "x", "annotations": {}}, "spec": {"replicas": 2}})
    assert storage.build(body=body) == {}
    assert storage.fetch(body=body) is None


def test_the_operator_registers_no_handler_that_would_need_a_diff_base(tmp_path: Any) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: x, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: x, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: x, user: x}}]\n"
        "current-context: x\n"
    )
    registry, settings, _ = build(OperatorConfig(kubeconfig=str(kubeconfig)))
    assert isinstance(settings.persistence.diffbase_storage, NoDiffBase)
    changing = [h for h in registry._changing.get_all_handlers()]  # on.create/update/delete/resume/field
    assert changing == [], "a changing handler reads kopf's diff base: drop NoDiffBase first"
    selectors = [
        s for r in (registry._watching, registry._spawning, registry._indexing) for s in r.get_all_selectors()
    ]
    named = {s.any_name or s.plural for s in selectors}
    assert c.PLURAL in named
    assert "customresourcedefinitions" in named
    children = {"pods", "services", "configmaps", "statefulsets", "networkpolicies"}
    assert named.isdisjoint(children), "the children are watched by child_watch.py, not kopf"


def _child(kind: str, **meta: Any) -> dict[str, Any]:
    labels = {c.LABEL_DEPLOYMENT: KEY[1], c.LABEL_GROUP_INDEX: "0"}
    return {
        "kind": kind,
        "metadata": {"name": "chat-0-0", "namespace": KEY[0], "uid": "u1", "labels": labels, **meta},
    }


def test_pods_and_statefulsets_wake_their_loop_other_children_only_when_they_go() -> None:
    state, event = _state()
    for kind in ("Pod", "StatefulSet"):
        state.child_changed(kind, KEY, _child(kind), False)
        assert event.is_set(), kind
        event.clear()
    for kind in ("Service", "ConfigMap", "NetworkPolicy"):
        state.child_changed(kind, KEY, _child(kind), False)
        assert not event.is_set(), kind
        state.child_changed(kind, KEY, _child(kind), True)
        assert event.is_set(), kind
        event.clear()


def test_a_pod_going_is_noted_for_the_restart_policy() -> None:
    state, _ = _state()
    memory = state.memories[KEY] = DeploymentMemory()
    state.child_changed("Pod", KEY, _child("Pod"), False)
    memory.take_watch_events()
    assert memory.group(0).lost == {}
    state.child_changed("Pod", KEY, _child("Pod", deletionTimestamp="2026-12-02T00:00:00Z"), False)
    memory.take_watch_events()
    assert memory.group(0).lost == {"u1": "chat-0-0"}
