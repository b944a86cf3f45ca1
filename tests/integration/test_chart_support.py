"""Support (no tests) for the chart's integration tests: a recording API proxy and RBAC arithmetic.

`RecordingProxy` listens on plain HTTP on loopback and forwards every request to the real
apiserver authenticated as a ServiceAccount (a bearer token from the TokenRequest API), streaming
responses (watches included). It records each request as an `ApiCall` (verb, API group, resource,
namespace, status), so a test can run the operator *as the chart's ServiceAccount* and then compare
what it did with what the chart's RBAC grants:
  - a 403 means the chart grants too little;
  - a server-side apply (PATCH) that creates its object counts as `patch` and `create`, as the
    apiserver authorizes both;
  - a granted (group, resource, verb) that no call used means the chart grants too much.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
from aiohttp import web

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}


@dataclass(frozen=True)
class ApiCall:
    """One request, in RBAC terms. `resource` includes the subresource ("grokdeployments/status")."""

    method: str
    path: str
    verb: str
    group: str
    resource: str
    namespace: str
    status: int
    #: A 403 from authorization (RBAC), not from admission (e.g. a namespace being deleted, which
    #: a cluster-wide operator meets when another test's namespace goes).
    rbac_denied: bool = False


def classify(method: str, url: str) -> tuple[str, str, str, str] | None:
    """(verb, group, resource, namespace) of a resource request, or None for discovery/non-resource URLs."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if segments[:2] == ["api", "v1"]:
        group, rest = "", segments[2:]
    elif len(segments) >= 3 and segments[0] == "apis":
        group, rest = segments[1], segments[3:]
    else:
        return None  # /api, /apis, /version, /healthz, /openapi ...
    if not rest:
        return None  # /apis/<group>/<version>: discovery
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) >= 2 else ""
    if len(rest) >= 3:
        resource = f"{resource}/{rest[2]}"
    query = parse_qs(parts.query)
    watching = query.get("watch", ["false"])[0] in {"true", "1"}
    verb = {
        "GET": "watch" if watching else ("get" if name else "list"),
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if name else "deletecollection",
    }.get(method.upper(), method.lower())
    return verb, group, resource, namespace


class RecordingProxy:
    """An HTTP -> HTTPS forwarding proxy run in a background thread; `calls` is what went through."""

    def __init__(self, upstream: str, token: str, ca_data: bytes) -> None:
        self.upstream = upstream.rstrip("/")
        self.token = token
        self.calls: list[ApiCall] = []
        self._ssl = ssl.create_default_context(cadata=ca_data.decode())
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="recording-proxy", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self.port = 0

    def start(self) -> str:
        """Start serving; returns the proxy's URL."""
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("recording proxy did not start within 10 s")
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._startup())
        self._ready.set()
        self._loop.run_forever()

    async def _startup(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _shutdown(self) -> None:
        # Open watch streams never end by themselves: cancel their handlers, close the upstream
        # session, then the server's cleanup has nothing left to wait for.
        for task in list(self._handlers):
            task.cancel()
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        headers = {
            k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP | {"authorization"}
        }
        headers["Authorization"] = f"Bearer {self.token}"
        body = await request.read()
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body or None, ssl=self._ssl
        ) as upstream:
            kind = classify(request.method, request.path_qs)
            denial = await upstream.read() if upstream.status == 403 else b""
            if kind is not None:
                verb, group, resource, namespace = kind
                rbac = upstream.status == 403 and b"NamespaceTerminating" not in denial
                self.calls.append(
                    ApiCall(
                        request.method, request.path, verb, group, resource, namespace, upstream.status, rbac
                    )
                )
                if verb == "patch" and upstream.status == 201:
                    # A server-side apply that creates the object is authorized as `create` too.
                    self.calls.append(
                        ApiCall(request.method, request.path, "create", group, resource, namespace, 201)
                    )
            response = web.StreamResponse(status=upstream.status)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    response.headers[key] = value
            await response.prepare(request)
            try:
                if denial:
                    await response.write(denial)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            except (ConnectionResetError, aiohttp.ClientError):
                return response
            await response.write_eof()
            return response


Triple = tuple[str, str, str]  # (apiGroup, resource, verb)


def granted_triples(rules: Iterable[dict[str, Any]]) -> set[Triple]:
    """Expand RBAC PolicyRules into (group, resource, verb) triples; wildcards are refused outright."""
    triples: set[Triple] = set()
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(field, []), (
                f"wildcard in {field} of {rule}: least privilege forbids it"
            )
        assert not rule.get("resourceNames"), "resourceNames are not used by this chart"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    triples.add((group, resource, verb))
    return triples


def used_triples(calls: Iterable[ApiCall]) -> set[Triple]:
    return {(c.group, c.resource, c.verb) for c in calls}


def kubeconfig_for_proxy(url: str) -> str:
    """A kubeconfig that sends everything to the proxy (which adds the ServiceAccount's token)."""
    return (
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: proxy\n  cluster:\n    server: {url}\n"
        "users:\n- name: proxied\n  user: {}\n"
        "contexts:\n- name: proxy\n  context:\n    cluster: proxy\n    user: proxied\n"
        "current-context: proxy\n"
    )
