"""The children's LIST and WATCH streams, one thread per kind and namespace, feeding the ChildStore.

Data flow: `ChildWatches.ensure(namespace)` (None: every namespace, for --all-namespaces) starts,
once per namespace, a thread per kind in child_cache.KINDS that:

    LIST the kind's objects carrying the operator's managed-by label (pages of LIST_PAGE) ─► the
    event loop: ChildStore.listed() ─► WATCH from the list's resourceVersion (bookmarks on, the
    server ends it after WATCH_SECONDS) ─► each event to the loop: ChildStore.changed() ─► when a
    watch ends, WATCH again from the last version seen; "410 Gone" (the version expired) LISTs
    again; any other failure waits (1 s, doubling to 30 s) and LISTs again.

Decoding and slimming happen in the thread; the loop only files the result (`call_soon_threadsafe`).
A watch that fails is marked down until its next LIST succeeds (`health()`: the operator's
readiness and metrics). A namespace is synced once every kind's first LIST has reached the store:
a GrokDeployment's first pass awaits `synced(namespace)`, so it never mistakes children not yet
listed for missing ones.

Why not kopf's watches (kopf.index, kopf.on.event), which this replaces for the children: kopf
runs every event through its handler machinery (an object memory, a patch, loggers, cause
detection, one handler invocation per index and per spy), about 2 ms of CPU per event, on the
event loop; a thousand objects bring some 13,000 child events. Here an event costs its JSON decode
and a dict update. The watches run with the operator's credentials and the same label selector,
so they need the same RBAC (list and watch on each kind) that kopf's did.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from grok_operator import constants as c
from grok_operator.child_cache import KINDS
from grok_operator.child_store import ChildStore
from grok_operator.kube import ApiError, EventStream, KubeApi, Obj, collection_path
from grok_operator.metrics import WatchHealth

logger = logging.getLogger(__name__)

LIST_PAGE = 500
#: The server ends each WATCH after this long (the next one starts from the last version seen).
WATCH_SECONDS = 300
RETRY_SECONDS = (1.0, 30.0)
SELECTOR = f"{c.LABEL_MANAGED_BY}={c.MANAGED_BY}"


class VersionExpiredError(Exception):
    """The apiserver no longer has the version a WATCH asked to start from (410 Gone)."""


@dataclass
class _Scope:
    """One namespace's (or every namespace's) watches."""

    pending: set[str] = field(default_factory=lambda: set(KINDS))
    synced: asyncio.Event = field(default_factory=asyncio.Event)


class ChildWatches:
    """Every child watch of one operator; created, driven and read on the event loop."""

    def __init__(self, api: KubeApi, store: ChildStore, *, all_namespaces: bool = False) -> None:
        self.api, self.store, self.all_namespaces = api, store, all_namespaces
        self._scopes: dict[str | None, _Scope] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._streams: set[EventStream] = set()
        self._lock = threading.Lock()  # guards _streams (threads add, stop() closes) and _failures
        #: (kind, scope) → the last failure of a watch that is down (threads set and clear it).
        self._failures: dict[tuple[str, str | None], str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def ensure(self, namespace: str | None) -> None:
        """Watch `namespace`'s children (None: every namespace) unless already watched."""
        if namespace in self._scopes:
            return
        self._loop = asyncio.get_running_loop()
        self._scopes[namespace] = _Scope()
        for kind in KINDS:
            thread = threading.Thread(
                target=self._run,
                args=(kind, namespace),
                name=f"watch-{kind}-{namespace or 'all'}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()

    async def synced(self, namespace: str) -> None:
        """Return once every child kind of `namespace` has been listed into the store (watching
        every namespace's children at once when the operator watches all namespaces)."""
        scope = None if self.all_namespaces else namespace
        self.ensure(scope)
        await self._scopes[scope].synced.wait()

    def health(self) -> tuple[WatchHealth, ...]:
        """Each started watch: listed yet, and its failure while it is down (on the loop)."""
        with self._lock:
            failures = dict(self._failures)
        return tuple(
            WatchHealth(kind, scope or "*", kind not in watched.pending, failures.get((kind, scope)))
            for scope, watched in self._scopes.items()
            for kind in KINDS
        )

    def stop(self, timeout: float = 5.0) -> None:
        """End every watch thread (callable from any thread)."""
        self._stop.set()
        with self._lock:
            for stream in list(self._streams):
                stream.interrupt()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    # ---- in the watch threads ---------------------------------------------------------------------
    def _to_loop(self, fn: Callable[..., None], *args: object) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _run(self, kind: str, namespace: str | None) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                version = self._list(kind, namespace)
                failures = 0
                with self._lock:
                    self._failures.pop((kind, namespace), None)
                while not self._stop.is_set():
                    version = self._watch(kind, namespace, version)
            except VersionExpiredError:
                continue  # LIST again at once
            except Exception as err:  # a broken stream, an apiserver restart, RBAC: retried
                if self._stop.is_set():
                    return
                failures += 1
                wait = min(RETRY_SECONDS[1], RETRY_SECONDS[0] * 2 ** (failures - 1))
                with self._lock:
                    self._failures[(kind, namespace)] = str(err)[:300]
                logger.warning(
                    f"watching {kind} ({namespace or 'all namespaces'}) failed, again in {wait:.0f} s: {err}"
                )
                self._stop.wait(wait)

    def _list(self, kind: str, namespace: str | None) -> str:
        """LIST every labelled object of `kind` into the store; the list's resourceVersion."""
        path, cont = collection_path(kind, namespace), ""
        items: list[Obj] = []
        while True:
            query = {
                "labelSelector": SELECTOR,
                "limit": str(LIST_PAGE),
                **({"continue": cont} if cont else {}),
            }
            page = self.api.list_page(path, query)
            items.extend(page.get("items") or [])
            cont = str((page.get("metadata") or {}).get("continue") or "")
            if not cont:
                break
        self._to_loop(self._listed, kind, namespace, items)
        return str(page["metadata"]["resourceVersion"])

    def _listed(self, kind: str, namespace: str | None, items: list[Obj]) -> None:
        self.store.listed(kind, namespace, items)
        scope = self._scopes[namespace]
        scope.pending.discard(kind)
        if not scope.pending:
            scope.synced.set()

    def _watch(self, kind: str, namespace: str | None, version: str) -> str:
        """One WATCH from `version` until the server ends it; the last version seen."""
        query = {
            "labelSelector": SELECTOR,
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": version,
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        try:
            stream = self.api.watch(collection_path(kind, namespace), query, read_timeout=WATCH_SECONDS + 30)
        except ApiError as err:
            if err.status == 410:
                raise VersionExpiredError(str(err)) from err
            raise
        with self._lock:
            self._streams.add(stream)
        try:
            for event in stream:
                version = self._apply(kind, event, version)
        finally:
            with self._lock:
                self._streams.discard(stream)
            stream.close()
        return version

    def _apply(self, kind: str, event: Obj, version: str) -> str:
        obj = event.get("object") or {}
        if event.get("type") == "ERROR":
            if obj.get("code") == 410:
                raise VersionExpiredError(str(obj.get("message", "")))
            raise ApiError("WATCH", kind, int(obj.get("code") or 500), str(obj.get("message", "")))
        if event.get("type") != "BOOKMARK":
            self._to_loop(self.store.changed, kind, str(event.get("type")), obj)
        return str((obj.get("metadata") or {}).get("resourceVersion") or version)
