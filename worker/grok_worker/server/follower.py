"""A follower host of a multi-host group: health only, replays the leader's engine calls.

Data flow: start grpc.health.v1 (NOT_SERVING) on the serving port (TLS when configured, a renewed
certificate served without a restart: cert_reload.py) and on the
plaintext health-only port when one is set -> build and warm up the same engine as the leader
(same compiled steps on the same global mesh) -> connect to the leader's step broadcast -> SERVING
-> replay every frame (`engine.multihost.run_follower`) in a thread. Exits 0 when the leader shuts
the group down (or on SIGTERM), 1 when the leader is lost or a replayed step fails.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from grok_worker.engine.api import Engine
from grok_worker.engine.multihost import HostLostError, StepFollower, run_follower
from grok_worker.engine.step_handshake import HandshakeRefusedError
from grok_worker.server.app import EngineFactory
from grok_worker.server.cert_reload import ServedCertificate
from grok_worker.server.health_port import bind_grpc, health_only_server
from grok_worker.server.process import JOIN_TIMEOUT_SECONDS, exit_now, install_signals
from grok_worker.server.security import Security
from grok_worker.server.wire import HealthServicer

log = logging.getLogger("grok_worker.follower")


async def _health_servers(
    health: HealthServicer, port: int, security: Security, certificate: ServedCertificate | None
) -> list[grpc.aio.Server]:
    servers = [health_only_server(health)]
    credentials = certificate.grpc_credentials() if certificate is not None else None
    bind_grpc(servers[0], security.bind_host, port, credentials, "serving.port / --port")
    if security.health_port is not None:
        servers.append(health_only_server(health))
        bind_grpc(
            servers[1],
            security.health_host,
            security.health_port,
            None,
            "security.health_port / --health-port",
        )
    for server in servers:
        await server.start()
    return servers


async def serve_follower(
    factory: EngineFactory, port: int, security: Security, follower: StepFollower
) -> int:
    certificate = ServedCertificate(security.tls) if security.tls is not None else None
    renewals = asyncio.ensure_future(certificate.run()) if certificate is not None else None
    try:
        return await _serve(factory, port, security, follower, certificate)
    finally:
        if renewals is not None:
            renewals.cancel()


async def _serve(
    factory: EngineFactory,
    port: int,
    security: Security,
    follower: StepFollower,
    certificate: ServedCertificate | None,
) -> int:
    health = HealthServicer()
    servers = await _health_servers(health, port, security, certificate)
    await health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    stop = asyncio.Event()
    install_signals(stop)
    loop = asyncio.get_running_loop()

    def join() -> Engine:
        engine, _ = factory(lambda fraction, message: None)
        engine.warmup(None)
        follower.connect(JOIN_TIMEOUT_SECONDS)
        return engine

    joining: asyncio.Future[Engine] = loop.run_in_executor(None, join)
    stopping: asyncio.Future[bool] = asyncio.ensure_future(stop.wait())
    first: list[asyncio.Future[Any]] = [joining, stopping]
    await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not joining.done():
        log.info("stopped while loading; exiting")
        await asyncio.gather(*(server.stop(0) for server in servers))
        exit_now(0)
    try:
        engine = joining.result()  # a failed load raises here: traceback and exit 1
    except (HandshakeRefusedError, TimeoutError) as err:
        log.error("could not join the group's step channel: %s", err)
        await asyncio.gather(*(server.stop(0) for server in servers))
        return 1
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    result: dict[str, int] = {}

    def replay() -> None:
        try:
            run_follower(engine, follower)
            result["code"] = 0
        except HostLostError as err:
            log.error("%s", err)
            result["code"] = 1
        except Exception:
            log.exception("replaying the leader's steps failed")
            result["code"] = 1
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=replay, name="follower-steps", daemon=True).start()
    await stop.wait()
    await health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    follower.close()
    await asyncio.gather(*(server.stop(0.5) for server in servers))
    code = result.get("code", 0)
    log.info("follower exiting with %d", code)
    return code
