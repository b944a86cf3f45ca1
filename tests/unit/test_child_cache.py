"""The watch-fed child cache (child_cache.py) and the memory's thread ownership (reconcile.py).

The cache is the store the operator's watches fill (child_store.py) plus the writes the watch has
not delivered yet; these tests drive it like the event loop and the reconcile thread do. The concurrency test runs reconcile
passes in threads while other threads storm the memory and the cache with watch events, as the
event loop does, and checks that nothing raises and no event is lost.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from test_operator_reconcile import NAME, NS, MemoryApi, body

from grok_operator import constants as c
from grok_operator.child_cache import RECORD_SECONDS, ChildCache, Key, Written, slim
from grok_operator.kube import Observed
from grok_operator.observe import pod_facts
from grok_operator.reconcile import DeploymentMemory, Reconciler

KEY: Key = (NS, NAME)


def child(kind: str, name: str, version: int, uid: str = "") -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": uid or f"uid-{name}",
            "resourceVersion": str(version),
            "labels": {c.LABEL_DEPLOYMENT: NAME},
            "managedFields": [{"manager": "x"}],
        },
    }


def test_a_pod_entry_keeps_what_a_pass_reads_of_it_and_no_more() -> None:
    pod = child("Pod", "chat-g0-0", 3)
    pod["spec"] = {
        "containers": [{"name": "worker", "env": [{"name": "X", "value": "y" * 1000}]}],
        "schedulingGates": [{"name": c.KUEUE_ADMISSION_GATE}],
        "nodeName": "gpu-0",
    }
    pod["status"] = {"phase": "Running", "containerStatuses": [{"name": "worker", "restartCount": 2}]}
    kept = slim(pod)
    assert kept["spec"] == {"schedulingGates": [{"name": c.KUEUE_ADMISSION_GATE}], "nodeName": "gpu-0"}
    assert kept["status"] == pod["status"]
    assert kept["status"] is not pod["status"]
    assert kept["metadata"]["labels"] == pod["metadata"]["labels"]
    assert "managedFields" not in kept["metadata"]
    facts = pod_facts(kept)
    assert (facts.restarts, facts.admission_gated, facts.phase) == (2, True, "Running")


def test_slim_copies_are_private() -> None:
    original = child("Pod", "chat-g0-0", 3)
    copied = slim(original)
    copied["metadata"]["labels"]["x"] = "y"
    assert "x" not in original["metadata"]["labels"]


def test_an_applied_object_shows_until_the_watch_delivers_it_or_something_newer() -> None:
    written = Written()
    written.applied(child("Service", "chat", 10), now=0.0)
    assert [o["metadata"]["resourceVersion"] for o in written.merge(KEY, "Service", [], now=1.0)] == ["10"]
    # An older watched version (the event from before the apply) does not win.
    older = written.merge(KEY, "Service", [child("Service", "chat", 9)], now=1.0)
    assert [o["metadata"]["resourceVersion"] for o in older] == ["10"]
    # The watch caught up: the record goes, the watched object is used.
    caught_up = written.merge(KEY, "Service", [child("Service", "chat", 11)], now=1.0)
    assert [o["metadata"]["resourceVersion"] for o in caught_up] == ["11"]
    assert written.pending() == 0


def test_a_deleted_object_is_hidden_until_the_watch_sees_it_go() -> None:
    written = Written()
    live = child("StatefulSet", "chat-g1", 4)
    written.deleted(KEY, "StatefulSet", "uid-chat-g1", now=0.0)
    assert written.merge(KEY, "StatefulSet", [live], now=1.0) == []
    assert written.pending() == 1
    # Recreated under the same name (new uid): shown.
    again = child("StatefulSet", "chat-g1", 8, uid="uid-new")
    assert written.merge(KEY, "StatefulSet", [again], now=1.0) == [again]
    assert written.pending() == 0  # the old uid is no longer watched: the deletion is confirmed


def test_records_expire_so_a_missed_event_cannot_pin_a_stale_view() -> None:
    written = Written()
    written.applied(child("ConfigMap", "chat", 10), now=0.0)
    written.deleted(KEY, "Service", "uid-chat", now=0.0)
    later = RECORD_SECONDS + 1
    assert written.merge(KEY, "ConfigMap", [], now=later) == []
    service = child("Service", "chat", 3)
    assert written.merge(KEY, "Service", [service], now=later) == [service]


def _by_uid(*objs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["uid"]: o for o in objs}


def test_the_cache_builds_observed_children_from_the_store() -> None:
    cache = ChildCache()
    pods = _by_uid(child("Pod", "chat-g0-0", 1), child("Pod", "chat-g0-1", 2))
    held = {
        "StatefulSet": {KEY: _by_uid(child("StatefulSet", "chat-g0", 1))},
        "Service": {KEY: _by_uid(child("Service", "chat", 1), child("Service", "chat-g0", 1))},
        "ConfigMap": {},
        "Pod": {KEY: pods},
        "NetworkPolicy": {KEY: _by_uid(child("NetworkPolicy", "chat-g0", 4))},
    }
    cache.written.applied(child("ConfigMap", "chat", 7))
    observed = cache.observed(KEY, held.__getitem__)
    assert sorted(observed.services) == ["chat", "chat-g0"]
    assert list(observed.statefulsets) == ["chat-g0"]
    assert list(observed.config_maps) == ["chat"]
    assert [p["metadata"]["name"] for p in observed.pods] == ["chat-g0-0", "chat-g0-1"]
    assert list(observed.network_policies) == ["chat-g0"]
    assert cache.observed(("other", "x"), held.__getitem__) == Observed()


def test_a_pass_fed_by_the_cache_makes_no_list_call_and_records_its_writes() -> None:
    api = MemoryApi()
    lists: list[str] = []
    api.observe = lambda namespace, name: lists.append(name) or Observed()  # type: ignore[method-assign]
    written = Written()
    Reconciler(api, written=written).reconcile(
        body(api), DeploymentMemory(), now=1.0, now_iso="2026-01-01T00:00:00Z", observed=Observed()
    )
    assert lists == []
    # ConfigMap, client Service, 2 x (headless Service, StatefulSet, NetworkPolicy)
    assert written.pending() == 8


def test_reconcile_passes_run_safely_against_storms_of_watch_events() -> None:
    """Passes in threads (as asyncio.to_thread runs them) while other threads deliver pod
    deletions and cache writes as fast as they can: nothing raises, every deletion is counted."""
    api = MemoryApi()
    memory = DeploymentMemory()
    reconciler = Reconciler(api, written=Written())
    lock = threading.Lock()  # MemoryApi's dict is the test's stand-in for the apiserver, not under test
    stop = threading.Event()
    errors: list[BaseException] = []
    delivered = 500

    def passes() -> None:
        try:
            while not stop.is_set():
                with lock:
                    observed = api.observe(NS, NAME)
                    snapshot = body(api)
                reconciler.reconcile(
                    snapshot, memory, now=1.0, now_iso="2026-01-01T00:00:00Z", observed=observed
                )
        except BaseException as err:
            errors.append(err)

    def storm() -> None:
        try:
            for i in range(delivered):
                # Groups 2-4 do not exist: the pass creates and prunes their memory meanwhile.
                memory.pod_deleted(i % 5, f"storm-{i}", f"chat-g{i % 5}-{i}")
                assert reconciler.written is not None
                reconciler.written.applied(child("Service", f"extra-{i % 7}", i))
                reconciler.written.merge(KEY, "Service", [])
        except BaseException as err:
            errors.append(err)

    # Only one pass runs at a time per GrokDeployment (its daemon awaits the thread), so one
    # pass thread; the storms stand for the event loop and for other objects' passes.
    runner = threading.Thread(target=passes)
    storms = [threading.Thread(target=storm) for _ in range(3)]
    original_apply = api.apply

    def locked_apply(obj: dict[str, Any]) -> dict[str, Any]:
        with lock:
            return original_apply(copy.deepcopy(obj))

    api.apply = locked_apply  # type: ignore[method-assign]
    runner.start()
    for thread in storms:
        thread.start()
    for thread in storms:
        thread.join()
    stop.set()
    runner.join()
    assert not errors, errors
    memory.take_watch_events()
    lost = sum(len(memory.group(i).lost) for i in (0, 1))
    # Distinct uids per i (the three storms repeat them); groups 0 and 1 keep every one.
    assert lost == delivered * 2 // 5
