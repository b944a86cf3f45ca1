"""kopf wiring: one reconcile loop per GrokDeployment, woken by changes to it and to its children.

Data flow: kopf starts `run_deployment` (a daemon) for every GrokDeployment it sees, on creation
and on operator start alike (that is the create/resume path); the daemon runs `Reconciler` passes
in a worker thread. Watch events for the GrokDeployment itself (spec edits, `kubectl scale`, from
kopf) and for its pods and StatefulSets, or a child that went (from the operator's own child
watches, child_watch.py), wake the daemon at once; without events it resyncs every
`resync_seconds`. One daemon per object means passes for one object never overlap.

Every pass starts from the object as the watch last delivered it (kopf keeps a daemon's `body`
current; a copy is taken on the loop): reading it costs no request. A loop whose object is being
deleted (it, its namespace or its CRD; once the CRD is going kopf delivers no more events, so every
pass then reads its object) reads it afresh, takes kopf's finalizer off and ends, so
deletion never waits on kopf (which stops serving a kind whose CRD is going, leaving its
finalizers in place); a write that finds the object or its namespace gone ends the loop too.
Children go with their owner (garbage collector). Every other event of the CRD goes to
crd_skew.py, which logs how an installed CRD of an earlier build differs from this operator's.

Children are read from memory, not listed: the operator's child watches keep every labelled
StatefulSet, Service, ConfigMap, Pod and NetworkPolicy in a store on the event loop
(child_store.py; kopf's own watches cost about 2 ms of CPU per event, see child_watch.py); a
daemon's first pass waits until its namespace's children are listed, and before each pass the
daemon copies its object's entries out of the store on the event loop (child_cache.py). A pass
reads the API only to write, for the Secrets its spec names and a group's step-key Secret (each
at most every 30 s once found; Secrets are never watched or listed) and for a Kueue Workload
while a group waits for admission; it never LISTs.

Fewer passes while a fleet comes up: every kopf handler here is a coroutine (kopf runs plain
functions in a thread pool, one hop per event); a burst of child events within DEBOUNCE_SECONDS
makes one pass; the watch event of a pass's own status write wakes nobody (its resourceVersion is the one
the write returned); and an object's first pass, which creates its children, takes a reconcile
slot before any re-pass (slots.py).

Why a daemon and an event handler rather than on.create/on.update handlers: those make kopf write its
own bookkeeping on every change (the last-handled-configuration annotation, progress in status).
With this wiring kopf's only writes are its finalizer, added once and removed on deletion, and
the operator's writes are all hash- or diff-gated, so an idle operator writes nothing.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from grok_operator import constants as c
from grok_operator.child_cache import ChildCache, Key
from grok_operator.child_store import ChildStore
from grok_operator.child_watch import ChildWatches
from grok_operator.crd_skew import CrdCheck
from grok_operator.kube import ApiError, KubeApi, Obj
from grok_operator.metrics import OperatorMetrics, PassResult, Snapshot
from grok_operator.ratelimit import CreateLimiter
from grok_operator.reconcile import DeploymentMemory, Reconciler
from grok_operator.refusals import ObjectGoneError
from grok_operator.slots import PrioritySlots

#: Coalesce a burst of child events (a group's pods and StatefulSet change together, a pod goes
#: scheduled → running → ready within a second or so) into one pass.
DEBOUNCE_SECONDS = 0.25
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
    #: The children's watches cover every namespace (`--all-namespaces`), not each object's own.
    all_namespaces: bool = False
    #: Passes that may run at once (the reconcile threads). A daemon takes a slot *before* it copies
    #: its object and children, so a pass never starts from a copy that aged in a queue.
    slots: PrioritySlots = field(default_factory=lambda: PrioritySlots(8))
    #: The resourceVersion each object's last status write produced (loop-owned): its watch
    #: event is this operator's own write, not a change to act on.
    own_versions: dict[Key, str] = field(default_factory=dict)
    #: The CRD is being deleted (loop-owned): kopf no longer delivers its objects' events, so
    #: passes read their object afresh rather than trust the watch's last copy.
    crd_going: bool = False
    #: Compares each generation of the installed CRD with this operator's (loop-owned).
    crd_check: CrdCheck = field(default_factory=CrdCheck)
    #: The phase each running loop's last pass reported, "" before its first (loop-owned).
    phases: dict[Key, str] = field(default_factory=dict)
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    #: The children as the watches delivered them, and the watches (loop-owned).
    store: ChildStore = field(init=False)
    watches: ChildWatches = field(init=False)

    def __post_init__(self) -> None:
        self.store = ChildStore(self.child_changed)
        self.watches = ChildWatches(self.api, self.store, all_namespaces=self.all_namespaces)
        self.metrics.read_state_from(self.metrics_snapshot)

    def metrics_snapshot(self) -> Snapshot:
        """What /metrics and /readyz report (on the loop, which owns what it reads)."""
        writes, failures = self.api.write_totals()
        return Snapshot(
            phases=Counter(self.phases.values()),
            writes=writes,
            write_failures=failures,
            slots_waiting=self.slots.waiting,
            watches=self.watches.health(),
        )

    @property
    def passes(self) -> int:
        """Reconcile passes finished so far (tests and benchmarks read it)."""
        value = self.metrics.registry.get_sample_value(
            "grok_operator_reconcile_passes_total", {"result": PassResult.OK}
        )
        return int(value or 0)

    def passed(self, key: Key, phase: str) -> None:
        """A pass of `key`'s loop ended well, reporting `phase` ("" when it wrote no status)."""
        self.metrics.passes.labels(PassResult.OK).inc()
        if phase:
            self.phases[key] = phase

    def child_changed(self, kind: str, key: Key, child: Obj, gone: bool) -> None:
        """A child's watch event: a Pod or StatefulSet that changed, or any child that went, wakes
        its GrokDeployment's loop; a Pod going is noted for the group restart policy."""
        meta = child.get("metadata") or {}
        if kind == "Pod" and (gone or meta.get("deletionTimestamp")):
            index = str((meta.get("labels") or {}).get(c.LABEL_GROUP_INDEX, ""))
            memory = self.memories.get(key)
            if memory is not None and index.isdigit():
                memory.pod_deleted(int(index), str(meta.get("uid", "")), str(meta.get("name", "")))
        if gone or kind in ("Pod", "StatefulSet"):
            self.wake(*key)

    def wake(self, namespace: str | None, name: str | None) -> None:
        if namespace and name and (event := self.wakers.get((namespace, name))) is not None:
            event.set()

    def wake_unless_own(self, namespace: str | None, name: str | None, version: str | None) -> None:
        """Wake the object's loop unless this event is the status write its last pass made."""
        if namespace and name and version and self.own_versions.get((namespace, name)) == version:
            return
        self.wake(namespace, name)


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def register(registry: kopf.OperatorRegistry, state: OperatorState) -> None:
    """Add the operator's handlers to `registry`, bound to `state`."""
    reconciler = Reconciler(state.api, limiter=state.limiter, written=state.cache.written)

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
        uid = str(body.metadata.get("uid", ""))
        wake = state.wakers.setdefault(key, asyncio.Event())
        memory = state.memories.setdefault(key, DeploymentMemory())
        failures = 0
        passed = False
        state.phases.setdefault(key, "")
        try:
            await state.watches.synced(key[0])  # the first pass must see every child listed
            while not stopped:
                wait = state.resync_seconds
                try:
                    async with state.slots.hold(first=not passed):
                        wake.clear()
                        snapshot = _snapshot(body)
                        if snapshot is None or state.crd_going:
                            # It, or its CRD (whose objects' events stop coming), is being deleted:
                            # read it afresh; `_current` takes kopf's finalizer off.
                            snapshot = await asyncio.to_thread(_current, state.api, key, uid)
                        if snapshot is None:
                            logger.info(f"{key[0]}/{key[1]} is gone or being deleted: its loop ends")
                            state.memories.pop(key, None)
                            return
                        children = state.cache.observed(
                            key, state.store.index
                        )  # on the loop, which owns the store
                        started = time.perf_counter()
                        outcome = await asyncio.to_thread(
                            reconciler.reconcile,
                            snapshot,
                            memory,
                            now=time.monotonic(),
                            now_iso=_now_iso(),
                            observed=children,
                        )
                        state.metrics.pass_seconds.observe(time.perf_counter() - started)
                    failures = 0
                    passed = True
                    state.passed(key, outcome.phase)
                    if outcome.status_version is not None:
                        state.own_versions[key] = outcome.status_version
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
                    state.metrics.passes.labels(PassResult.API_ERROR).inc()
                    failures += 1
                    wait = min(ERROR_BACKOFF_SECONDS[1], ERROR_BACKOFF_SECONDS[0] * 2 ** (failures - 1))
                    logger.warning(f"{key[0]}/{key[1]}: reconcile failed, retrying in {wait:.0f}s: {err}")
                except Exception:  # never let one object's bug kill its loop; report and back off
                    state.metrics.passes.labels(PassResult.CRASHED).inc()
                    failures += 1
                    wait = min(ERROR_BACKOFF_SECONDS[1], ERROR_BACKOFF_SECONDS[0] * 2 ** (failures - 1))
                    logger.exception(f"{key[0]}/{key[1]}: reconcile crashed, retrying in {wait:.0f}s")
                await _sleep(wake, stopped, wait)
                await asyncio.sleep(DEBOUNCE_SECONDS)
        finally:
            state.wakers.pop(key, None)
            state.own_versions.pop(key, None)
            state.phases.pop(key, None)
            if body.metadata.get("deletionTimestamp"):
                state.memories.pop(key, None)
                state.cache.written.forget(key)

    @kopf.on.event(c.GROUP, c.VERSION, c.PLURAL, registry=registry)
    async def deployment_changed(namespace: str | None, name: str | None, meta: kopf.Meta, **_: Any) -> None:
        state.wake_unless_own(namespace, name, meta.get("resourceVersion"))

    @kopf.on.event(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        registry=registry,
        when=lambda name, **_: name == c.CRD_NAME,
    )
    async def crd_changed(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
        state.crd_going = bool(body.metadata.get("deletionTimestamp"))
        if not state.crd_going:
            state.crd_check.observe(body, logger)
            return
        logger.warning(f"the {c.CRD_NAME} CRD is being deleted: releasing every GrokDeployment")
        await release_all(state)


def _snapshot(body: kopf.Body) -> dict[str, Any] | None:
    """A private copy of the object as the watch last delivered it (kopf keeps a daemon's `body`
    current); None when it is being deleted."""
    snapshot: dict[str, Any] = copy.deepcopy(dict(body))
    return None if snapshot.get("metadata", {}).get("deletionTimestamp") else snapshot


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
