"""kopf wiring: one reconcile loop per GrokDeployment, woken by changes to it and to its children.

Data flow: kopf starts `run_deployment` (a daemon) for every GrokDeployment it sees, on creation
and on operator start alike (that is the create/resume path); the daemon runs `Reconciler` passes
in a worker thread. Watch events for the GrokDeployment itself (spec edits, `kubectl scale`) and
for its pods and StatefulSets wake the daemon at once; without events it resyncs every
`resync_seconds`. One daemon per object means passes for one object never overlap.

Every pass starts from a fresh read of the object: a loop whose object is gone (deleted, its
namespace or its CRD deleted) ends there, and never writes a child for it. An object being deleted
loses kopf's finalizer here too, so deletion never waits on kopf (which stops serving a kind whose
CRD is going, leaving its finalizers in place); children go with their owner (garbage collector).

Children are read from memory, not listed: kopf indexes (`*_index` below) keep every labelled
StatefulSet, Service, ConfigMap and Pod from the watches kopf runs anyway, and before each pass
the daemon copies its object's entries out of them on the event loop (child_cache.py). A pass
reads the API only for the object itself (the one GET above), to write, and for a Kueue Workload
while a group waits for admission; it never LISTs.

Why a daemon and event spies rather than on.create/on.update handlers: those make kopf write its
own bookkeeping on every change (the last-handled-configuration annotation, progress in status).
With this wiring kopf's only writes are its finalizer, added once and removed on deletion, and
the operator's writes are all hash- or diff-gated, so an idle operator writes nothing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from grok_operator import constants as c
from grok_operator.child_cache import ChildCache, Key, index_entry
from grok_operator.kube import ApiError, KubeApi, Observed
from grok_operator.ratelimit import CreateLimiter
from grok_operator.reconcile import DeploymentMemory, Reconciler
from grok_operator.refusals import ObjectGoneError

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
    #: Bounds group creations per object and overall; None: unbounded.
    limiter: CreateLimiter | None = None
    cache: ChildCache = field(default_factory=ChildCache)
    #: kind -> the kopf index of that kind's children (set by the first daemon; loop-owned).
    indexes: dict[str, Any] = field(default_factory=dict)
    #: Reconcile passes finished so far (loop-owned; tests and benchmarks read it).
    passes: int = 0
    #: Passes that may run at once (the reconcile threads). A daemon takes a slot *before* it copies
    #: its object and children, so a pass never starts from a copy that aged in a queue.
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(8))

    def wake(self, namespace: str | None, name: str | None) -> None:
        if namespace and name and (event := self.wakers.get((namespace, name))) is not None:
            event.set()


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def register(registry: kopf.OperatorRegistry, state: OperatorState) -> None:
    """Add the operator's handlers to `registry`, bound to `state`."""
    reconciler = Reconciler(state.api, limiter=state.limiter, written=state.cache.written)
    managed = {c.LABEL_MANAGED_BY: c.MANAGED_BY}

    # The watch-fed cache: kopf fills these before it starts any daemon, and keeps them current.
    @kopf.index("apps", "v1", "statefulsets", id="statefulset_index", labels=managed, registry=registry)
    def statefulset_index(namespace: str | None, body: kopf.Body, **_: Any) -> dict[Key, Any] | None:
        return index_entry(namespace, body)

    @kopf.index("services", id="service_index", labels=managed, registry=registry)
    def service_index(namespace: str | None, body: kopf.Body, **_: Any) -> dict[Key, Any] | None:
        return index_entry(namespace, body)

    @kopf.index("configmaps", id="config_map_index", labels=managed, registry=registry)
    def config_map_index(namespace: str | None, body: kopf.Body, **_: Any) -> dict[Key, Any] | None:
        return index_entry(namespace, body)

    @kopf.index("pods", id="pod_index", labels=managed, registry=registry)
    def pod_index(namespace: str | None, body: kopf.Body, **_: Any) -> dict[Key, Any] | None:
        return index_entry(namespace, body)

    def observed(key: Key, kwargs: dict[str, Any]) -> Observed:
        if not state.indexes:
            state.indexes.update(
                StatefulSet=kwargs["statefulset_index"],
                Service=kwargs["service_index"],
                ConfigMap=kwargs["config_map_index"],
                Pod=kwargs["pod_index"],
            )
        return state.cache.observed(key, state.indexes)

    @kopf.daemon(
        c.GROUP, c.VERSION, c.PLURAL, registry=registry, cancellation_backoff=2.0, cancellation_timeout=5.0
    )
    async def run_deployment(
        stopped: kopf.DaemonStopped,
        namespace: str | None,
        name: str,
        body: kopf.Body,
        logger: kopf.Logger,
        **kwargs: Any,
    ) -> None:
        key = (namespace or "", name)
        uid = str(body.metadata.get("uid", ""))
        wake = state.wakers.setdefault(key, asyncio.Event())
        memory = state.memories.setdefault(key, DeploymentMemory())
        failures = 0
        try:
            while not stopped:
                wait = state.resync_seconds
                try:
                    async with state.slots:
                        wake.clear()
                        snapshot = await asyncio.to_thread(_current, state.api, key, uid)
                        if snapshot is None:
                            logger.info(f"{key[0]}/{key[1]} is gone or being deleted: its loop ends")
                            state.memories.pop(key, None)
                            return
                        children = observed(key, kwargs)  # on the loop, which owns the indexes
                        outcome = await asyncio.to_thread(
                            reconciler.reconcile,
                            snapshot,
                            memory,
                            now=time.monotonic(),
                            now_iso=_now_iso(),
                            observed=children,
                        )
                    failures = 0
                    state.passes += 1
                    if outcome.writes:
                        logger.info(
                            f"{key[0]}/{key[1]} reconciled: phase {outcome.phase}, {outcome.writes} write(s)"
                        )
                    if outcome.requeue_after is not None:
                        wait = min(wait, outcome.requeue_after)
                except ObjectGoneError as err:
                    logger.info(f"{key[0]}/{key[1]} is gone ({err}): its loop ends")
                    state.memories.pop(key, None)
                    return
                except ApiError as err:
                    failures += 1
                    wait = min(ERROR_BACKOFF_SECONDS[1], ERROR_BACKOFF_SECONDS[0] * 2 ** (failures - 1))
                    logger.warning(f"{key[0]}/{key[1]}: reconcile failed, retrying in {wait:.0f}s: {err}")
                except Exception:  # never let one object's bug kill its loop; report and back off
                    failures += 1
                    wait = min(ERROR_BACKOFF_SECONDS[1], ERROR_BACKOFF_SECONDS[0] * 2 ** (failures - 1))
                    logger.exception(f"{key[0]}/{key[1]}: reconcile crashed, retrying in {wait:.0f}s")
                await _sleep(wake, stopped, wait)
                await asyncio.sleep(DEBOUNCE_SECONDS)
        finally:
            state.wakers.pop(key, None)
            if body.metadata.get("deletionTimestamp"):
                state.memories.pop(key, None)
                state.cache.written.forget(key)

    @kopf.on.event(c.GROUP, c.VERSION, c.PLURAL, registry=registry)
    def deployment_changed(namespace: str | None, name: str | None, **_: Any) -> None:
        state.wake(namespace, name)

    @kopf.on.event(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        registry=registry,
        when=lambda name, **_: name == c.CRD_NAME,
    )
    async def crd_changed(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
        if not body.metadata.get("deletionTimestamp"):
            return
        logger.warning(f"the {c.CRD_NAME} CRD is being deleted: releasing every GrokDeployment")
        await release_all(state)

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


def _current(api: KubeApi, key: Key, uid: str) -> dict[str, Any] | None:
    """The object as stored now; None (after taking kopf's finalizer off) when it is gone, being
    deleted, or replaced by a new object of the same name."""
    live = api.get(c.KIND, key[0], key[1])
    if live is None or (uid and live["metadata"].get("uid") != uid):
        return None
    if live["metadata"].get("deletionTimestamp"):
        api.remove_finalizer(live, c.FINALIZER)
        return None
    return live


#: How long the operator keeps releasing GrokDeployments after their CRD started going.
CRD_RELEASE_SECONDS = 120.0


async def release_all(state: OperatorState) -> None:
    """The CRD is being deleted: the apiserver deletes every GrokDeployment, and each must lose
    kopf's finalizer (kopf itself no longer can). Wakes every loop (each then ends) and takes the
    finalizer off every object this operator knows until none is left or the time runs out."""
    deadline = time.monotonic() + CRD_RELEASE_SECONDS
    pending = set(state.memories) | set(state.wakers)
    while pending and time.monotonic() < deadline:
        for key in sorted(pending):
            state.wake(*key)
            try:
                if await asyncio.to_thread(_current, state.api, key, "") is None:
                    pending.discard(key)
            except ApiError:
                pass  # tried again below, until the deadline
        await asyncio.sleep(1.0)


async def _sleep(wake: asyncio.Event, stopped: kopf.DaemonStopped, seconds: float) -> None:
    """Sleep until woken, stopped, or `seconds` pass, whichever comes first."""
    tasks = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopped.wait())}
    try:
        await asyncio.wait(tasks, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
