"""The Prometheus exporter's own port: `GET /metrics` and nothing else (404 elsewhere).

Data flow: a scrape -> `prometheus_client.generate_latest` over the worker's registry (a few dozen
series, microseconds) on the event loop -> text exposition format. It binds where the generation
APIs bind (`security.bind_address`), not on every interface.
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from grok_worker.server.listen import listen


class MetricsPort:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.app = web.Application()
        self.app.add_routes([web.get("/metrics", self.metrics)])
        self._runner: web.AppRunner | None = None

    async def metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self, host: str, port: int) -> int:
        """Bind and serve; returns the port (port 0 picks a free one)."""
        sock = listen(host, port)
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runner = runner
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
