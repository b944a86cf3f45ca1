"""A follower host of a multi-host group: health only, replays the leader's engine calls.

Data flow: start grpc.health.v1 (NOT_SERVING) -> build and warm up the same engine as the leader
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
from grpc_health.v1 import health_pb2, health_pb2_grpc

from grok_worker.engine.api import Engine
from grok_worker.engine.multihost import HostLostError, StepFollower, run_follower
from grok_worker.server.app import EngineFactory
from grok_worker.server.process import JOIN_TIMEOUT_SECONDS, exit_now, install_signals
from grok_worker.server.wire import HealthServicer

log = logging.getLogger("grok_worker.follower")


async def serve_follower(
    factory: EngineFactory, bind: str, port: int, leader: tuple[str, int], process_id: int
) -> int:
    server = grpc.aio.server()
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    server.add_insecure_port(f"{bind}:{port}")
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    stop = asyncio.Event()
    install_signals(stop)
    loop = asyncio.get_running_loop()
    follower = StepFollower(leader[0], leader[1], process_id)

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
        await server.stop(0)
        exit_now(0)
    engine = joining.result()  # a failed load raises here: traceback and exit 1
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
    await server.stop(0.5)
    code = result.get("code", 0)
    log.info("follower exiting with %d", code)
    return code
