"""What wakes a GrokDeployment's loop (handlers.py) and what kopf is spared (runtime.py): its own
status write wakes nothing, anything else does; the no-op diff base builds nothing; the children's
watches are label-selected by the apiserver."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from grok_operator import constants as c
from grok_operator.handlers import OperatorState
from grok_operator.runtime import CHILD_RESOURCES, NoDiffBase, OperatorConfig, build

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
    selectors = {str(s) for s in settings.watching.label_selectors}
    assert len(selectors) == len(CHILD_RESOURCES)
    assert set(settings.watching.label_selectors.values()) == {f"{c.LABEL_MANAGED_BY}={c.MANAGED_BY}"}
