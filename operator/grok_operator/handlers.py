"""kopf wiring: one reconcile loop per GrokDeployment, woken by changes to it and to its children.

Data flow: kopf starts `run_deployment` (a daemon) for every GrokDeployment it sees, on creation
and on operator start alike (that is the create/resume path); the daemon runs `Reconciler` passes
in a worker thread. Watch events for the GrokDeployment itself (spec edits, `kubectl scale`) and
for its pods and StatefulSets wake the daemon at once; without events it resyncs every
`resync_seconds`. One daemon per object means passes for one object never overlap.

Why a daemon and event spies rather than on.create/on.update handlers: those make kopf write its
own bookkeeping on every change (the last-handled-configuration annotation, progress in status).
With this wiring kopf's only writes are its finalizer, added once and removed on deletion, and
the operator's writes are all hash- or diff-gated, so an idle operator writes nothing.
"""

from __future__ import annotations

import asyncio
import copy
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from grok_operator import constants as c
from grok_operator.kube import ApiError, KubeApi
from grok_operator.reconcile import DeploymentMemory, Reconciler

Key = tuple[str, str]

#: Coalesce a burst of child events (a group's pods change together) into one pass.
DEBOUNCE_SECONDS = 0.05
#: Wait after a pass that failed on an API error before the next try (doubles, capped).
ERROR_BACKOFF_SECONDS = (1.0, 60.0)


@dataclass
class OperatorState:
    """Shared by all handlers of one running operator (kopf's `memo`)."""

    api: KubeApi
    resync_seconds: float = 30.0
    wakers: dict[Key, asyncio.Event] = field(default_factory=dict)
    memories: dict[Key, DeploymentMemory] = field(default_factory=dict)

    def wake(self, namespace: str | None, name: str | None) -> None:
        if namespace and name and (event := self.wakers.get((namespace, name))) is not None:
            event.set()


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def register(registry: kopf.OperatorRegistry, state: OperatorState) -> None:
    """Add the operator's handlers to `registry`, bound to `state`."""
    reconciler = Reconciler(state.api)
    managed = {c.LABEL_MANAGED_BY: c.MANAGED_BY}

    @kopf.daemon(
        c.GROUP, c.VERSION, c.PLURAL, registry=registry, cancellation_backoff=2.0, cancellation_timeout=5.0
    )
    async def run_deployment(
        stopped: kopf.DaemonStopped,
        namespace: str | None,
        name: str,
        body: kopf.Body,
        logger: kopf.Logger,
        **_: Any,
    ) -> None:
        key = (namespace or "", name)
        wake = state.wakers.setdefault(key, asyncio.Event())
        memory = state.memories.setdefault(key, DeploymentMemory())
        failures = 0
        try:
            while not stopped:
                wake.clear()
                snapshot = _snapshot(body)
                wait = state.resync_seconds
                try:
                    outcome = await asyncio.to_thread(
                        reconciler.reconcile, snapshot, memory, now=time.monotonic(), now_iso=_now_iso()
                    )
                    failures = 0
                    if outcome.writes:
                        logger.info(f"reconciled: phase {outcome.phase}, {outcome.writes} write(s)")
                    if outcome.requeue_after is not None:
                        wait = min(wait, outcome.requeue_after)
                except ApiError as err:
                    failures += 1
                    wait = min(ERROR_BACKOFF_SECONDS[1], ERROR_BACKOFF_SECONDS[0] * 2 ** (failures - 1))
                    logger.warning(f"reconcile failed, retrying in {wait:.0f}s: {err}")
                except Exception:  # never let one object's bug kill its loop; report and back off
                    failures += 1
                    wait = min(ERROR_BACKOFF_SECONDS[1], ERROR_BACKOFF_SECONDS[0] * 2 ** (failures - 1))
                    logger.exception(f"reconcile crashed, retrying in {wait:.0f}s")
                await _sleep(wake, stopped, wait)
                await asyncio.sleep(DEBOUNCE_SECONDS)
        finally:
            state.wakers.pop(key, None)
            if body.metadata.get("deletionTimestamp"):
                state.memories.pop(key, None)

    @kopf.on.event(c.GROUP, c.VERSION, c.PLURAL, registry=registry)
    def deployment_changed(namespace: str | None, name: str | None, **_: Any) -> None:
        state.wake(namespace, name)

    @kopf.on.event("pods", labels=managed, registry=registry)
    def pod_changed(
        type: str | None, namespace: str | None, labels: kopf.Labels, meta: kopf.Meta, **_: Any
    ) -> None:
        owner = labels.get(c.LABEL_DEPLOYMENT)
        index = labels.get(c.LABEL_GROUP_INDEX, "")
        if namespace and owner and index.isdigit() and (type == "DELETED" or meta.get("deletionTimestamp")):
            memory = state.memories.get((namespace, owner))
            if memory is not None:
                memory.pod_deleted(int(index), str(meta.get("uid", "")), str(meta.get("name", "")))
        state.wake(namespace, owner)

    @kopf.on.event("apps", "v1", "statefulsets", labels=managed, registry=registry)
    def statefulset_changed(namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
        state.wake(namespace, labels.get(c.LABEL_DEPLOYMENT))


async def _sleep(wake: asyncio.Event, stopped: kopf.DaemonStopped, seconds: float) -> None:
    """Sleep until woken, stopped, or `seconds` pass, whichever comes first."""
    tasks = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopped.wait())}
    try:
        await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _snapshot(body: kopf.Body) -> dict[str, Any]:
    """A plain, deep copy of kopf's live view of the object, stable for one pass."""
    return copy.deepcopy({key: body[key] for key in body})
