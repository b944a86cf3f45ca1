"""The one module that talks to the Kubernetes API.

Data flow: the running operator reads a GrokDeployment's children from its watch-fed cache
(child_cache.py), which `list_page()` and `watch()` fill (child_watch.py: a LIST, then WATCH
streams, per child kind); `KubeApi.observe()` (four list calls by label, counted in `list_calls`)
serves callers without one. The reconciler writes through `apply()` (server-side apply under the one field manager
`grok-operator`), `delete()`, `patch_status()` and `post_event()`. Every write goes through
`_write()`, which counts it: `writes` lets tests and benchmarks check that an idle operator
writes nothing, and `write_totals()` (answered and refused writes, by verb, kind and HTTP
status) is what the operator's /metrics exports. The reconciler only calls a write when a
rendered hash or the status differs.

Requests go through the kubernetes client's REST layer with plain JSON dicts (no generated
models), so one path serves every kind, including server-side apply's content type.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import threading
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from grok_operator import constants as c

Obj = dict[str, Any]

_PATHS = {
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "Service": "/api/v1/namespaces/{ns}/services",
    "Pod": "/api/v1/namespaces/{ns}/pods",
    "Event": "/api/v1/namespaces/{ns}/events",
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
    "StatefulSet": "/apis/apps/v1/namespaces/{ns}/statefulsets",
    c.KIND: f"/apis/{c.API_VERSION}/namespaces/{{ns}}/{c.PLURAL}",
    "Workload": f"/apis/{c.KUEUE_API_VERSION}/namespaces/{{ns}}/workloads",
}


def collection_path(kind: str, namespace: str | None) -> str:
    """The URL path of `kind`'s objects in `namespace`, or in every namespace when None."""
    template = _PATHS[kind]
    return template.replace("/namespaces/{ns}", "") if namespace is None else template.format(ns=namespace)


class ApiError(Exception):
    """A request the apiserver answered with an error status."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.status = status
        #: The apiserver's answer (a metav1.Status JSON document, usually), for refusals.py.
        self.body = body


@dataclass
class Observed:
    """A GrokDeployment's children as the apiserver returned them."""

    statefulsets: dict[str, Obj] = field(default_factory=dict)
    services: dict[str, Obj] = field(default_factory=dict)
    config_maps: dict[str, Obj] = field(default_factory=dict)
    pods: list[Obj] = field(default_factory=list)
    network_policies: dict[str, Obj] = field(default_factory=dict)


def load_configuration(kubeconfig: str | None = None, context: str | None = None) -> k8s.Configuration:
    """Client configuration from an explicit kubeconfig, else in-cluster, else ~/.kube/config."""
    configuration = k8s.Configuration()
    if kubeconfig:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
        return configuration
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(context=context, client_configuration=configuration)  # type: ignore[no-untyped-call]
    return configuration


class KubeApi:
    """Thread-safe thin client: JSON in, JSON out, writes counted by verb and kind."""

    def __init__(self, configuration: k8s.Configuration) -> None:
        self._client = k8s.ApiClient(configuration)
        self._lock = threading.Lock()
        self.write_counts: Counter[str] = Counter()
        #: Writes the apiserver refused or failed, by (kind, HTTP status or "unanswered").
        self.write_failures: Counter[tuple[str, str]] = Counter()
        self.namespace_writes: Counter[str] = Counter()
        #: LIST requests this client made (the operator's passes make none: they read the cache).
        self.list_calls = 0
        #: The last writes, "verb kind path: body excerpt", for debugging and test failure messages.
        self.recent_writes: deque[str] = deque(maxlen=50)
        #: Writes made by the calling thread: one reconcile pass runs in one thread, so a pass
        #: counts its own writes and not those of passes for other objects running beside it.
        self._thread = threading.local()

    @property
    def writes(self) -> int:
        with self._lock:
            return sum(self.write_counts.values())

    @property
    def thread_writes(self) -> int:
        """Write requests made so far by the calling thread."""
        return int(getattr(self.__dict__.get("_thread"), "writes", 0))

    def write_totals(self) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
        """Copies of the write counters: answered writes by (verb, kind), failures by (kind, status)."""
        answered: dict[tuple[str, str], int] = {}
        with self._lock:
            for key, count in self.write_counts.items():
                verb, _, kind = key.partition(" ")
                answered[(verb, kind)] = count
            return answered, dict(self.write_failures)

    def writes_in(self, namespace: str) -> int:
        """Write requests made so far for objects in `namespace`."""
        with self._lock:
            return self.namespace_writes[namespace]

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    # ---- transport ---------------------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: object = None,
        content_type: str = "application/json",
    ) -> Obj:
        url_path = f"{path}?{urlencode(dict(query))}" if query else path
        headers = {"Accept": "application/json", "Content-Type": content_type}
        serialized = self._client.param_serialize(
            method=method,
            resource_path=url_path,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self._client.call_api(*serialized[:4], _request_timeout=30)
        response.read()  # type: ignore[no-untyped-call]
        text = response.data.decode() if isinstance(response.data, bytes) else str(response.data or "")
        if not 200 <= response.status < 300:
            raise ApiError(method, path, response.status, text)
        return json.loads(text) if text else {}

    def _write(self, verb: str, kind: str, method: str, path: str, **kwargs: Any) -> Obj:
        namespace = path.split("/namespaces/", 1)[1].split("/", 1)[0] if "/namespaces/" in path else ""
        failure = ""
        try:
            return self._request(method, path, **kwargs)
        except ApiError as err:
            failure = str(err.status)
            raise
        except Exception:
            failure = "unanswered"  # no HTTP answer: the connection failed or timed out
            raise
        finally:
            # Counted once answered, so a reader never sees a write counted that has not landed yet.
            self._thread.writes = self.thread_writes + 1
            with self._lock:
                self.write_counts[f"{verb} {kind}"] += 1
                if failure:
                    self.write_failures[(kind, failure)] += 1
                self.namespace_writes[namespace] += 1
                # A Secret's body is a key: never kept, not even for a failure message.
                body = "(secret data)" if kind == "Secret" else json.dumps(kwargs.get("body"))[:800]
                self.recent_writes.append(f"{verb} {kind} {path}: {body}")

    # ---- the cache's LIST and WATCH (child_watch.py) -----------------------------------------
    def list_page(self, path: str, query: Mapping[str, str]) -> Obj:
        """One page of a LIST for the watch-fed cache (not counted in `list_calls`, which counts
        the LISTs of passes)."""
        return self._request("GET", path, query=query)

    def watch(self, path: str, query: Mapping[str, str], read_timeout: float) -> EventStream:
        """Open a WATCH (`query` carries `watch=true` and its resourceVersion)."""
        serialized = self._client.param_serialize(
            method="GET",
            resource_path=f"{path}?{urlencode(dict(query))}",
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self._client.call_api(*serialized[:4], _request_timeout=(10, read_timeout))
        if response.status != 200:
            response.read()  # type: ignore[no-untyped-call]
            raise ApiError(
                "WATCH", path, response.status, bytes(response.data or b"").decode(errors="replace")
            )
        return EventStream(response.response)

    # ---- reads -------------------------------------------------------------------------------
    def list(self, kind: str, namespace: str, label_selector: str) -> list[Obj]:
        with self._lock:
            self.list_calls += 1
        result = self._request(
            "GET", _PATHS[kind].format(ns=namespace), query={"labelSelector": label_selector}
        )
        items: list[Obj] = result.get("items", [])
        return items

    def observe(self, namespace: str, name: str) -> Observed:
        """Every child labelled with the GrokDeployment's name, keyed by object name."""
        selector = f"{c.LABEL_DEPLOYMENT}={name}"

        def by_name(kind: str) -> dict[str, Obj]:
            return {o["metadata"]["name"]: o for o in self.list(kind, namespace, selector)}

        return Observed(
            statefulsets=by_name("StatefulSet"),
            services=by_name("Service"),
            config_maps=by_name("ConfigMap"),
            pods=self.list("Pod", namespace, selector),
            network_policies=by_name("NetworkPolicy"),
        )

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        """One object by name, None when it (or its kind, or its namespace) is gone. Secrets are
        only ever read this way: RBAC grants get on them, not list."""
        try:
            return self._request("GET", f"{_PATHS[kind].format(ns=namespace)}/{name}")
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    def failed_creates(self, namespace: str) -> builtins.list[Obj]:
        """The StatefulSet controller's FailedCreate Events in `namespace` (why pods are missing)."""
        result = self._request(
            "GET",
            _PATHS["Event"].format(ns=namespace),
            query={"fieldSelector": "involvedObject.kind=StatefulSet,reason=FailedCreate"},
        )
        events: builtins.list[Obj] = result.get("items", [])
        return events

    def workload(self, namespace: str, name: str) -> Obj | None:
        """Kueue's Workload `name` (read only while a group waits for admission), None if absent."""
        try:
            return self._request("GET", f"{_PATHS['Workload'].format(ns=namespace)}/{name}")
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    # ---- writes ------------------------------------------------------------------------------
    def create(self, obj: Obj) -> bool:
        """Create `obj` unless an object of its name exists (then False, and nothing is changed)."""
        meta = obj["metadata"]
        try:
            self._write(
                "create", obj["kind"], "POST", _PATHS[obj["kind"]].format(ns=meta["namespace"]), body=obj
            )
        except ApiError as err:
            if err.status == 409:
                return False
            raise
        return True

    def apply(self, obj: Obj) -> Obj:
        """Server-side apply `obj` under the operator's field manager (create or update)."""
        meta = obj["metadata"]
        path = f"{_PATHS[obj['kind']].format(ns=meta['namespace'])}/{meta['name']}"
        return self._write(
            "apply",
            obj["kind"],
            "PATCH",
            path,
            query={"fieldManager": c.FIELD_MANAGER, "force": "true"},
            body=obj,
            content_type="application/apply-patch+yaml",
        )

    def delete(
        self, kind: str, namespace: str, name: str, *, uid: str | None = None, propagation: str = "Background"
    ) -> bool:
        """Delete an object (only the one with `uid`, when given); False if it was already gone."""
        body: Obj = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self._write("delete", kind, "DELETE", f"{_PATHS[kind].format(ns=namespace)}/{name}", body=body)
        except ApiError as err:
            if err.status in (404, 409):
                return False
            raise
        return True

    def remove_finalizer(self, obj: Mapping[str, Any], finalizer: str) -> bool:
        """Take `finalizer` off a GrokDeployment (a JSON patch that first tests it is still at its
        index); False when it was not there or the object is gone."""
        meta = obj["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if finalizer not in finalizers:
            return False
        at = finalizers.index(finalizer)
        patch = [
            {"op": "test", "path": f"/metadata/finalizers/{at}", "value": finalizer},
            {"op": "remove", "path": f"/metadata/finalizers/{at}"},
        ]
        path = f"{_PATHS[c.KIND].format(ns=meta['namespace'])}/{meta['name']}"
        try:
            self._write(
                "patch", c.KIND, "PATCH", path, body=patch, content_type="application/json-patch+json"
            )
        except ApiError as err:
            if err.status in (404, 409, 422):
                return False
            raise
        return True

    def patch_status(self, namespace: str, name: str, status: Obj) -> Obj:
        """JSON-merge-patch the GrokDeployment's status subresource."""
        path = f"{_PATHS[c.KIND].format(ns=namespace)}/{name}/status"
        return self._write(
            "patch",
            f"{c.KIND}/status",
            "PATCH",
            path,
            body={"status": status},
            content_type="application/merge-patch+json",
        )

    def post_event(
        self, involved: Mapping[str, Any], *, reason: str, message: str, warning: bool = False
    ) -> None:
        """Record a core/v1 Event on the GrokDeployment (what `kubectl describe` shows)."""
        meta = involved["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": c.API_VERSION,
                "kind": c.KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": c.MANAGED_BY},
            "reportingComponent": c.MANAGED_BY,
            "reportingInstance": c.MANAGED_BY,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self._write("create", "Event", "POST", _PATHS["Event"].format(ns=meta["namespace"]), body=event)


class EventStream:
    """The events of one WATCH response, decoded as they arrive; `interrupt()` (from any thread)
    ends the iteration, `close()` (from the reading thread) releases the connection.

    The kubernetes client's own `watch.Watch` is not used: it turns every event into the API's
    typed models (the per-event cost the child watches exist to avoid), and with
    `deserialize=False` it no longer tracks the resourceVersion to resume from."""

    def __init__(self, response: Any) -> None:
        self._response = response

    def __iter__(self) -> Iterator[Obj]:
        pending = b""
        for chunk in self._response.stream(amt=None, decode_content=False):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    yield json.loads(line)

    def interrupt(self) -> None:
        """Shut the socket for reading: a read blocked in another thread returns (urllib3's
        `shutdown`; closing the response from another thread would wait for that read)."""
        with contextlib.suppress(OSError, ValueError, RuntimeError):  # already closed or released
            self._response.shutdown()

    def close(self) -> None:
        self._response.close()
