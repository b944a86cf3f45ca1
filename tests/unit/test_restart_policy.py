"""Group restart policies (restart_policy.py) through whole reconcile passes on the in-memory API:
which container restarts recreate a group under each of LeaderWorkerSet's policy names. The real
control plane runs the same in tests/integration/test_operator_restart_policy.py."""

from __future__ import annotations

from typing import Any

import pytest
from test_operator_reconcile import MemoryApi, run

from grok_operator.reconcile import DeploymentMemory
from grok_operator.restart_policy import AFTER_START, NONE, ON_POD_RESTART, restart_rule


def bump_restarts(api: MemoryApi, pod: str, count: int = 1) -> None:
    """The kubelet restarted a container of `pod` in place (same pod, same uid)."""
    api.objects[("Pod", pod)]["status"]["containerStatuses"][0]["restartCount"] = count


def not_ready(api: MemoryApi, pod: str) -> None:
    api.objects[("Pod", pod)]["status"]["conditions"][0]["status"] = "False"


def policy(name: str) -> dict[str, Any]:
    return {"failurePolicy": {"backoffSeconds": 0, "restartPolicy": name}}


def deletes(writes: list[str]) -> list[str]:
    return [w for w in writes if w.startswith("delete Pod")]


def loading_group_restarts(name: str) -> list[str]:
    """A restart while group g0 is still loading (its pods not Ready yet)."""
    api, memory = MemoryApi(), DeploymentMemory()
    run(api, memory, **policy(name))
    api.run_pods()
    for pod in ("chat-g0-0", "chat-g0-1"):
        not_ready(api, pod)
    bump_restarts(api, "chat-g0-0")
    return deletes(run(api, memory, **policy(name)))


def ready_group_restarts(name: str) -> list[str]:
    """A restart after group g0 was Ready."""
    api, memory = MemoryApi(), DeploymentMemory()
    run(api, memory, **policy(name))
    api.run_pods()
    assert deletes(run(api, memory, **policy(name))) == []
    bump_restarts(api, "chat-g0-1")
    return deletes(run(api, memory, **policy(name)))


def test_after_start_ignores_restarts_while_loading_and_recreates_after() -> None:
    assert loading_group_restarts(AFTER_START) == []
    assert ready_group_restarts(AFTER_START) == ["delete Pod chat-g0-0", "delete Pod chat-g0-1"]


def test_on_pod_restart_recreates_on_any_restart() -> None:
    assert loading_group_restarts(ON_POD_RESTART) == ["delete Pod chat-g0-0", "delete Pod chat-g0-1"]
    assert ready_group_restarts(ON_POD_RESTART) == ["delete Pod chat-g0-0", "delete Pod chat-g0-1"]


def test_none_never_recreates_for_a_restart() -> None:
    assert loading_group_restarts(NONE) == []
    assert ready_group_restarts(NONE) == []


def test_after_start_counts_only_restarts_since_the_group_became_ready() -> None:
    api, memory = MemoryApi(), DeploymentMemory()
    run(api, memory)
    api.run_pods()
    for pod in ("chat-g0-0", "chat-g0-1"):
        not_ready(api, pod)
    bump_restarts(api, "chat-g0-0", 2)  # two restarts during a slow load
    assert deletes(run(api, memory)) == []
    api.objects[("Pod", "chat-g0-0")]["status"]["conditions"][0]["status"] = "True"
    api.objects[("Pod", "chat-g0-1")]["status"]["conditions"][0]["status"] = "True"
    assert deletes(run(api, memory)) == []  # Ready now, with 2 old restarts: no recreation
    assert api.status["phase"] == "Ready"
    bump_restarts(api, "chat-g0-0", 3)
    assert deletes(run(api, memory)) == ["delete Pod chat-g0-0", "delete Pod chat-g0-1"]


@pytest.mark.parametrize(
    ("name", "started", "reported", "counts_all", "ignores"),
    [
        (AFTER_START, None, False, False, True),
        (AFTER_START, None, True, True, False),  # after an operator restart, the status said Ready
        (AFTER_START, {"u": 1}, False, False, False),
        (ON_POD_RESTART, None, False, True, False),
        (NONE, {"u": 1}, True, False, True),
    ],
)
def test_restart_rule(
    name: str, started: dict[str, int] | None, reported: bool, counts_all: bool, ignores: bool
) -> None:
    rule = restart_rule(name, started, reported)
    assert rule.ignore == ignores
    assert (rule.baseline is None and not rule.ignore) == counts_all
