"""The worker's servers and their lifecycle: start NOT_SERVING, load, compile, join, serve, drain.

Data flow: `WorkerServer.start()` binds grpc.aio with the generation service, grpc.health.v1
(NOT_SERVING) and reflection, the OpenAI-compatible HTTP API (aiohttp, when `http_port` is set),
the metrics exporter (`/metrics` only) and, when `health_port` is set, a plaintext gRPC server with
nothing but the same health servicer (for kubelet probes, which cannot speak TLS). With `tls` both
APIs serve TLS (mutual TLS with a client CA), and a renewed certificate is served without a
restart (cert_reload.py); with `tokens` every call but health and reflection
needs a bearer token (`server.auth`). Both front doors admit requests through one `Frontend` into
one scheduler. `load()` runs the blocking engine factory and warmup in a thread (the event loop
keeps answering health and ModelInfo with the load state and progress), waits for the group's
hosts, starts the scheduler and flips health to SERVING.
`drain(grace)` flips to NOT_SERVING (DRAINING), refuses new requests, lets in-flight ones finish
for up to `grace` seconds, ends the rest with UNAVAILABLE (HTTP 503), and stops the servers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from grok.v1 import generation_pb2 as pb
from grok_worker.engine.api import Engine, ProgressFn
from grok_worker.engine.scheduler import Scheduler
from grok_worker.engine.text import Tokenizer
from grok_worker.metrics import ServingMetrics
from grok_worker.server.auth import TokenInterceptor
from grok_worker.server.cert_reload import DEFAULT_POLL_SECONDS, ServedCertificate
from grok_worker.server.frontend import Frontend
from grok_worker.server.health_port import bind_grpc, health_only_server
from grok_worker.server.http_api import HttpApi
from grok_worker.server.metrics_port import MetricsPort
from grok_worker.server.servicer import GenerationServicer
from grok_worker.server.state import LoadState, WorkerState, write_termination_message
from grok_worker.server.tls import TLSFiles
from grok_worker.server.tokens import TokenStore
from grok_worker.server.wire import HealthServicer, add_generation_service, enable_reflection

log = logging.getLogger(__name__)

#: Blocking factory run off the event loop: reports progress, returns the engine and tokenizer.
EngineFactory = Callable[[ProgressFn], tuple[Engine, Tokenizer | None]]


@dataclass(frozen=True)
class ServerOptions:
    port: int = 0
    #: Where the gRPC, HTTP and metrics listeners bind ("[::]" or "" = every interface).
    bind_host: str = "[::]"
    #: None disables the exporter; 0 picks a free port.
    metrics_port: int | None = None
    #: None disables the OpenAI-compatible HTTP API; 0 picks a free port.
    http_port: int | None = None
    #: Plaintext health-only gRPC port; None = none, 0 picks a free port.
    health_port: int | None = None
    health_host: str = "127.0.0.1"
    #: TLS on the gRPC and HTTP APIs (None = plaintext).
    tls: TLSFiles | None = None
    #: How often the TLS files are checked for a renewed certificate.
    tls_poll_seconds: float = DEFAULT_POLL_SECONDS
    #: Accepted bearer tokens (None = no token needed).
    tokens: TokenStore | None = None
    max_queue: int = 64
    max_stop_strings: int = 8
    drain_grace_seconds: float = 30.0


def _describe(options: ServerOptions) -> str:
    """How the APIs are protected, for the start-up log line."""
    tls = options.tls
    transport = "plaintext" if tls is None else "mutual TLS" if tls.mutual else "TLS"
    return transport + (", bearer tokens" if options.tokens is not None else "")


class WorkerServer:
    def __init__(self, info: pb.ModelInfo, options: ServerOptions) -> None:
        self.options = options
        self.metrics = ServingMetrics()
        self.health = HealthServicer()
        self.state = WorkerState(self.health, self.metrics)
        self.frontend = Frontend(self.state, options.max_stop_strings)
        self.servicer = GenerationServicer(self.state, info, self.frontend)
        interceptors = [TokenInterceptor(options.tokens)] if options.tokens is not None else []
        self.server = grpc.aio.server(interceptors=interceptors, options=[("grpc.so_reuseport", 0)])
        add_generation_service(self.servicer, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = (
            pb.DESCRIPTOR.services_by_name["GenerationService"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        )
        enable_reflection(names, self.server)
        self.http = HttpApi(self.state, info, self.frontend, options.tokens)
        self.metrics_http = MetricsPort(self.metrics.registry)
        self.health_server = health_only_server(self.health)
        tls = options.tls
        self.certificate = ServedCertificate(tls, options.tls_poll_seconds) if tls is not None else None
        self._renewals: asyncio.Task[None] | None = None
        self.port = 0
        self.http_port: int | None = None
        self.metrics_port: int | None = None
        self.health_port: int | None = None
        self.scheduler: Scheduler | None = None
        self._stopped = asyncio.Event()
        #: Set when the worker can no longer serve (engine error, lost host); `grok-worker serve` exits 1.
        self.failed = asyncio.Event()

    @property
    def info(self) -> pb.ModelInfo:
        return self.servicer.info

    async def start(self) -> int:
        """Bind and start answering (health NOT_SERVING); returns the gRPC port."""
        options = self.options
        credentials = self.certificate.grpc_credentials() if self.certificate is not None else None
        self.port = bind_grpc(
            self.server, options.bind_host, options.port, credentials, "serving.port / --port"
        )
        await self.server.start()
        if self.certificate is not None:
            self._renewals = asyncio.create_task(self.certificate.run(), name="tls-renewals")
        await self.state.set(LoadState.LOADING)
        try:
            await self._start_side_listeners()
        except OSError:
            await self._stop_listeners(0)
            raise
        log.info(
            "gRPC on port %d (%s), HTTP on %s, metrics on %s, health-only on %s",
            self.port,
            _describe(options),
            self.http_port,
            self.metrics_port,
            self.health_port,
        )
        return self.port

    async def _start_side_listeners(self) -> None:
        options = self.options
        if options.health_port is not None:
            self.health_port = bind_grpc(
                self.health_server,
                options.health_host,
                options.health_port,
                None,
                "security.health_port / --health-port",
            )
            await self.health_server.start()
        if options.http_port is not None:
            context = self.certificate.ssl_context() if self.certificate is not None else None
            try:
                self.http_port = await self.http.start(options.bind_host, options.http_port, context)
            except OSError as err:
                raise OSError(
                    f"could not bind the HTTP port {options.http_port} (serving.http_port / --http-port): {err}"
                ) from err
        if options.metrics_port is not None:
            try:
                self.metrics_port = await self.metrics_http.start(options.bind_host, options.metrics_port)
            except OSError as err:
                raise OSError(
                    f"could not bind the metrics port {options.metrics_port} "
                    f"(serving.metrics_port / --metrics-port): {err}"
                ) from err

    async def _stop_listeners(self, grace: float) -> None:
        if self._renewals is not None:
            self._renewals.cancel()
        await asyncio.gather(
            self.server.stop(grace),
            self.health_server.stop(grace),
            self.http.stop(),
            self.metrics_http.stop(),
        )

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
        self.scheduler = self.frontend.scheduler = scheduler
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
                    "drain grace of %.1fs passed; ending %d requests with UNAVAILABLE",
                    grace,
                    self.scheduler.in_flight,
                )
                self.scheduler.abort_all(
                    f"the worker shut down before the request finished (drain grace of {grace:g}s passed); "
                    "retry on another replica"
                )
                await self.scheduler.wait_idle(2.0)
        await self._stop_listeners(1.0)
        if self.scheduler is not None:
            await self.scheduler.stop()
            self.scheduler = None
        self.frontend.close()
        self._stopped.set()
        return finished

    async def wait_stopped(self) -> None:
        await self._stopped.wait()
