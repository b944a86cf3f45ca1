"""The worker's gRPC server and its lifecycle: start NOT_SERVING, load, compile, join, serve, drain.

Data flow: `WorkerServer.start()` binds grpc.aio with the generation service, grpc.health.v1
(NOT_SERVING) and reflection, and the metrics exporter. `load()` runs the blocking engine factory
and warmup in a thread (the event loop keeps answering health and ModelInfo with the load state and
progress), waits for the group's hosts, starts the scheduler and flips health to SERVING.
`drain(grace)` flips to NOT_SERVING (DRAINING), refuses new requests, lets in-flight ones finish
for up to `grace` seconds, cancels the rest, and stops the server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from grok.v1 import generation_pb2 as pb
from grok.v1 import generation_pb2_grpc as pb_grpc
from grok_worker.engine.api import Engine, ProgressFn
from grok_worker.engine.scheduler import Scheduler
from grok_worker.engine.text import Tokenizer
from grok_worker.metrics import ServingMetrics
from grok_worker.server.servicer import GenerationServicer
from grok_worker.server.state import AsyncHealthServicer, LoadState, WorkerState, write_termination_message

log = logging.getLogger(__name__)

#: Blocking factory run off the event loop: reports progress, returns the engine and tokenizer.
EngineFactory = Callable[[ProgressFn], tuple[Engine, Tokenizer | None]]


@dataclass(frozen=True)
class ServerOptions:
    port: int = 0
    bind_host: str = "[::]"
    #: None disables the exporter; 0 picks a free port.
    metrics_port: int | None = None
    max_queue: int = 64
    max_stop_strings: int = 8
    drain_grace_seconds: float = 30.0


class WorkerServer:
    def __init__(self, info: pb.ModelInfo, options: ServerOptions) -> None:
        self.options = options
        self.metrics = ServingMetrics()
        self.health = AsyncHealthServicer()
        self.state = WorkerState(self.health, self.metrics)
        self.servicer = GenerationServicer(self.state, info, options.max_stop_strings)
        self.server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        pb_grpc.add_GenerationServiceServicer_to_server(self.servicer, self.server)  # type: ignore[no-untyped-call]
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = (
            pb.DESCRIPTOR.services_by_name["GenerationService"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(names, self.server)
        self.port = 0
        self.metrics_port: int | None = None
        self.scheduler: Scheduler | None = None
        self._stopped = asyncio.Event()
        #: Set when the worker can no longer serve (engine error, lost host); `grok-worker serve` exits 1.
        self.failed = asyncio.Event()

    @property
    def info(self) -> pb.ModelInfo:
        return self.servicer.info

    async def start(self) -> int:
        """Bind and start answering (health NOT_SERVING); returns the gRPC port."""
        address = f"{self.options.bind_host}:{self.options.port}"
        try:
            self.port = self.server.add_insecure_port(address)
        except RuntimeError:  # grpc reports a failed bind as RuntimeError
            self.port = 0
        if self.port == 0:
            raise OSError(f"could not bind the gRPC port {address} (serving.port / --port): is it in use?")
        await self.server.start()
        await self.state.set(LoadState.LOADING)
        if self.options.metrics_port is not None:
            try:
                self.metrics_port = self.metrics.serve(self.options.metrics_port)
            except OSError as err:
                await self.server.stop(0)
                raise OSError(
                    f"could not bind the metrics port {self.options.metrics_port} "
                    f"(serving.metrics_port / --metrics-port): {err}"
                ) from err
        log.info("gRPC on port %d, metrics on %s", self.port, self.metrics_port)
        return self.port

    def _progress(self, loop: asyncio.AbstractEventLoop, low: float, high: float) -> ProgressFn:
        def report(fraction: float, message: str) -> None:
            loop.call_soon_threadsafe(self.state.set_progress, low + (high - low) * fraction, message)

        return report

    async def load(
        self,
        factory: EngineFactory,
        wait_for_hosts: Callable[[], None] | None = None,
    ) -> Scheduler:
        """Build the engine, compile it, wait for the group, then serve."""
        loop = asyncio.get_running_loop()
        engine, tokenizer = await loop.run_in_executor(None, factory, self._progress(loop, 0.0, 0.8))
        await self.state.set(LoadState.COMPILING)
        await loop.run_in_executor(None, engine.warmup, self._progress(loop, 0.8, 1.0))
        self._fill_info(engine, tokenizer)
        if wait_for_hosts is not None:
            await self.state.set(LoadState.WAITING_FOR_HOSTS)
            await loop.run_in_executor(None, wait_for_hosts)
        self.state.set_progress(1.0, "ready")
        return await self.serve_engine(engine, tokenizer)

    async def serve_engine(self, engine: Engine, tokenizer: Tokenizer | None) -> Scheduler:
        """Start the scheduler on a warmed-up engine and report SERVING."""
        self._fill_info(engine, tokenizer)
        scheduler = Scheduler(
            engine, tokenizer, self.options.max_queue, self.metrics, on_failure=self._engine_failed
        )
        scheduler.start()
        self.scheduler = self.servicer.scheduler = scheduler
        await self.state.set(LoadState.SERVING)
        return scheduler

    def _fill_info(self, engine: Engine, tokenizer: Tokenizer | None) -> None:
        spec = engine.spec
        info = self.servicer.info
        info.vocab_size = spec.vocab_size
        info.max_seq_len = spec.max_seq_len
        info.max_prompt_len = spec.max_prompt_len
        info.max_batch = spec.max_batch
        info.eos_id = spec.eos_id
        del info.prefill_buckets[:]
        info.prefill_buckets.extend(spec.prefill_buckets)
        info.max_stop_strings = self.options.max_stop_strings
        info.has_tokenizer = tokenizer is not None

    def _engine_failed(self, message: str) -> None:
        asyncio.get_running_loop().create_task(self.fail(message))

    async def fail(self, message: str) -> None:
        """Unrecoverable (engine error, lost host): NOT_SERVING and every request ends UNAVAILABLE."""
        log.error("worker failed: %s", message)
        self.failed.set()
        if self.scheduler is not None:
            self.scheduler.fail(message)
        await self.state.set(LoadState.FAILED, message)
        self.state.set_progress(self.state.progress, message)
        write_termination_message(message)

    async def drain(self, grace: float | None = None) -> bool:
        """Stop taking requests, give in-flight ones `grace` seconds, then stop. True if all finished."""
        grace = self.options.drain_grace_seconds if grace is None else grace
        if self.state.state is not LoadState.FAILED:
            await self.state.set(LoadState.DRAINING)
        finished = True
        if self.scheduler is not None:
            self.scheduler.begin_drain()
            finished = await self.scheduler.wait_idle(grace)
            if not finished:
                log.warning(
                    "drain grace of %.1fs passed; cancelling %d requests", grace, self.scheduler.in_flight
                )
                self.scheduler.cancel_all()
                await self.scheduler.wait_idle(2.0)
        await self.server.stop(1.0)
        if self.scheduler is not None:
            await self.scheduler.stop()
        self._stopped.set()
        return finished

    async def wait_stopped(self) -> None:
        await self._stopped.wait()
