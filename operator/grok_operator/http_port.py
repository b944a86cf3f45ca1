"""The operator's own HTTP port: `GET /metrics` (Prometheus) and `GET /readyz` (the readiness probe).

Data flow: a request → a `Snapshot` of the operator taken on its event loop (the server runs on
that loop, so it reads loop-owned state without locks) → `/metrics`: the exposition of
metrics.py's registry; `/readyz`: 200 "ok" when every child watch the operator has started has
listed its objects and none is down, else 503 with one line per watch that is not ready, so
`kubectl get pod` shows an operator whose cache is stale (RBAC taken away, an apiserver it
cannot reach) as not ready. kopf's own endpoint (`--liveness`, `/healthz`) stays the liveness probe.

The port binds the address it is given (`--metrics-address`) and nothing else; it serves counts
and phases, never an object's name or spec.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from grok_operator.metrics import OperatorMetrics, Snapshot


def readiness_problems(snapshot: Snapshot) -> list[str]:
    """Why the operator is not ready: one line per child watch not yet listed or down."""
    problems = []
    for watch in snapshot.watches:
        where = "every namespace" if watch.scope == "*" else f"namespace {watch.scope}"
        if watch.failure is not None:
            problems.append(f"{watch.kind} watch ({where}) is down, retrying: {watch.failure}")
        elif not watch.listed:
            problems.append(f"{watch.kind} watch ({where}) has not listed its objects yet")
    return problems


def parse_address(value: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 in brackets) for argparse; a clear error naming the flag otherwise."""
    try:
        parts = urlsplit(f"//{value}")
        host, port = parts.hostname, parts.port
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--metrics-address {value!r}: {err}; use HOST:PORT") from err
    if not host or port is None:
        raise argparse.ArgumentTypeError(
            f"--metrics-address {value!r}: use HOST:PORT, e.g. 0.0.0.0:8081 (every interface), "
            "127.0.0.1:8081, [::1]:8081, or '' to serve no metrics or readiness"
        )
    return host, port


class HttpPort:
    """/metrics and /readyz on one listening socket, served on the operator's event loop."""

    def __init__(self, metrics: OperatorMetrics, snapshot: Callable[[], Snapshot]) -> None:
        self._metrics, self._snapshot = metrics, snapshot
        self.app = web.Application()
        self.app.add_routes([web.get("/metrics", self.scrape), web.get("/readyz", self.ready)])
        self._runner: web.AppRunner | None = None

    async def scrape(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self._metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def ready(self, request: web.Request) -> web.Response:
        problems = readiness_problems(self._snapshot())
        if problems:
            return web.Response(status=503, text="\n".join(problems) + "\n")
        return web.Response(text="ok\n")

    async def start(self, host: str, port: int) -> int:
        """Bind `host:port` and serve; the port bound (0 picks a free one)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family)
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runner = runner
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
