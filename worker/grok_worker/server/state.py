"""The worker's lifecycle state, shared by the servicer, the health service and the load sequence.

Data flow: the load sequence (`grok_worker.server.app`) moves the state LOADING -> COMPILING ->
WAITING_FOR_HOSTS -> SERVING, then DRAINING on SIGTERM, or FAILED when the engine or a host is lost.
Every change updates grpc.health.v1 (SERVING only in SERVING) and the metrics.
"""

from __future__ import annotations

import contextlib
import enum
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpc_health.v1 import health_pb2

from grok_worker.metrics import ServingMetrics

#: Kubernetes shows this file's text as the container's termination message (its default path);
#: the operator copies it into the GrokDeployment's status. Overridable for tests.
TERMINATION_LOG_ENV = "GROK_TERMINATION_LOG"
_TERMINATION_LOG = "/dev/termination-log"


def write_termination_message(message: str) -> None:
    """Leave why the worker is failing where Kubernetes (and so the operator) will read it."""
    path = Path(os.environ.get(TERMINATION_LOG_ENV, _TERMINATION_LOG))
    if not path.parent.is_dir() or (not path.exists() and path.parent == Path("/dev")):
        return  # not in a Kubernetes container: nothing reads it
    with contextlib.suppress(OSError):  # reporting must never hide the failure itself
        path.write_text(message[-4000:])  # Kubernetes keeps at most 4096 bytes


#: Service names whose health we publish: "" (the whole server) and the generation service.
GENERATION_SERVICE = "grok.v1.GenerationService"


class LoadState(enum.IntEnum):
    """Mirrors grok.v1.LoadState."""

    LOADING = 1
    COMPILING = 2
    WAITING_FOR_HOSTS = 3
    SERVING = 4
    DRAINING = 5
    FAILED = 6


@dataclass
class WorkerState:
    health: Any  # grok_worker.server.wire.HealthServicer
    metrics: ServingMetrics
    services: tuple[str, ...] = ("", GENERATION_SERVICE)
    state: LoadState = LoadState.LOADING
    progress: float = 0.0
    message: str = "starting"
    history: list[LoadState] = field(default_factory=list)

    async def set(self, state: LoadState, message: str = "") -> None:
        self.state = state
        self.message = message or state.name.lower().replace("_", " ")
        self.history.append(state)
        serving = state is LoadState.SERVING
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in self.services:
            await self.health.set(service, status)
        self.metrics.serving.set(1 if serving else 0)

    def set_progress(self, fraction: float, message: str = "") -> None:
        self.progress = max(0.0, min(1.0, fraction))
        if message:
            self.message = message
        self.metrics.load_progress.set(self.progress)
