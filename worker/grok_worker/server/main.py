"""`grok-worker serve`: what a worker pod runs (and what a developer runs by hand).

Data flow: flags + mounted config + group env (`server.config.resolve`) -> for a multi-host group,
jax.distributed joins the processes -> the leader (process 0) starts the gRPC server NOT_SERVING,
builds the engine (checkpoint load, prefill buckets compiled), waits for the followers to join the
step broadcast, then reports SERVING; SIGTERM drains within serving.drain_grace_seconds and exits 0.
A follower serves only grpc.health.v1, builds the same engine, joins the leader's step broadcast
and replays its steps; it exits 0 when the leader shuts down and 1 when the leader is lost.
A lost follower makes the leader report NOT_SERVING (FAILED), fail in-flight requests UNAVAILABLE
and exit 1, so the operator recreates the group.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from grok.v1 import generation_pb2 as pb
from grok_worker.contract import STEP_PORT_OFFSET
from grok_worker.engine.api import Engine, ProgressFn
from grok_worker.engine.multihost import BroadcastingEngine, StepBroadcaster, StepFollower
from grok_worker.engine.text import Tokenizer
from grok_worker.model_config import DIMENSION_NAMES
from grok_worker.server.app import EngineFactory, ServerOptions, WorkerServer
from grok_worker.server.config import ConfigError, ResolvedConfig, parse_buckets, resolve
from grok_worker.server.follower import serve_follower
from grok_worker.server.process import JOIN_TIMEOUT_SECONDS, exit_now, install_signals
from grok_worker.server.security import Security, load_security

log = logging.getLogger("grok_worker.serve")

#: Seconds a failed leader keeps answering health NOT_SERVING before exiting 1.
FAILURE_LINGER_SECONDS = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("--config", help="worker config JSON (default: $GROK_CONFIG_FILE); flags below override its fields")
    a("--preset", help="model preset: grok-1, small, tiny (model.preset)")
    a("--checkpoint", help="directory holding the release-format ckpt-0/ (model.checkpoint_path)")
    a("--tokenizer", help="SentencePiece model file (model.tokenizer_path)")
    a("--quantization", choices=["int8", "bf16"], help="weights on device (model.quantization)")
    a("--port", type=int, help="gRPC port (serving.port)")
    a("--metrics-port", type=int, help="Prometheus port, 0 = disabled (serving.metrics_port)")
    a("--http-port", type=int, help="OpenAI-compatible HTTP API port, 0 = disabled (serving.http_port)")
    a("--max-batch", type=int, help="decode slots (serving.max_batch)")
    a("--max-seq-len", type=int, help="prompt + completion tokens per request (serving.max_seq_len)")
    a("--max-queue", type=int, help="waiting requests before RESOURCE_EXHAUSTED (serving.max_queue)")
    a(
        "--prefill-buckets",
        type=parse_buckets,
        help="comma-separated prompt buckets (serving.prefill_buckets)",
    )
    a(
        "--prefill-chunk",
        type=int,
        help="prefill longer prompts in chunks of this many tokens, 0 = whole (serving.prefill_chunk)",
    )
    a(
        "--drain-grace",
        type=float,
        help="seconds to finish requests after SIGTERM (serving.drain_grace_seconds)",
    )
    a(
        "--engine",
        choices=["model", "mock"],
        default="model",
        help="'mock' serves the hand-checkable test engine",
    )
    a("--mock-step-delay", type=float, default=0.0, help="seconds per decode step of the mock engine")
    a("--random-weights", action="store_true", help="no checkpoint: random weights (demos and benchmarks)")
    a("--step-port", type=int, help="leader's step-broadcast port (default: coordinator port + 1)")
    a(
        "--bind",
        help="address the gRPC, HTTP and metrics ports bind, '' = every interface (security.bind_address)",
    )
    a("--tls-cert", help="PEM certificate: serve TLS on gRPC and HTTP (security.tls.cert_file)")
    a("--tls-key", help="PEM private key of --tls-cert (security.tls.key_file)")
    a(
        "--tls-client-ca",
        help="PEM CA bundle: require client certificates, mutual TLS (security.tls.client_ca_file)",
    )
    a("--tokens-dir", help="directory of bearer-token files; set = tokens required (security.tokens_dir)")
    a(
        "--group-secret-file",
        help="key authenticating the multi-host step channel (security.group_secret_file)",
    )
    a("--health-port", type=int, help="plaintext grpc.health.v1-only port, 0 = none (security.health_port)")
    a("--log-level", default="INFO")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = resolve(args, model_engine=args.engine == "model")
        factory, info = _engine_factory(args, config)
        step_port = _step_port(args, config) if config.group.multi_host else 0
        security = load_security(config.worker.security, config.group)
    except ConfigError as err:
        print(f"grok-worker serve: invalid configuration: {err}", file=sys.stderr)
        return 2
    group = config.group
    if group.multi_host and args.engine == "model":
        from grok_worker.engine.model_engine import initialize_distributed

        initialize_distributed(group)
    if group.is_leader:
        return asyncio.run(_serve_leader(config, factory, info, step_port, security))
    leader_host = group.coordinator_address.rpartition(":")[0].strip("[]")
    return asyncio.run(
        serve_follower(
            factory,
            config.worker.serving.port,
            security,
            StepFollower(leader_host, step_port, group.process_id, security.group_key, group.group_name),
        )
    )


def _engine_factory(args: argparse.Namespace, config: ResolvedConfig) -> tuple[EngineFactory, pb.ModelInfo]:
    serving = config.worker.serving
    mesh = config.mesh
    info = pb.ModelInfo(
        quantization=config.worker.model.quantization,
        mesh=pb.Mesh(data=mesh.data, expert=mesh.expert, model=mesh.model),
        num_hosts=config.group.num_processes,
    )
    if args.engine == "mock":
        from grok_worker.engine.mock import MockEngine
        from grok_worker.engine.text import ByteTokenizer

        info.preset = "mock"
        delay = args.mock_step_delay

        def mock_factory(progress: ProgressFn) -> tuple[Engine, Tokenizer | None]:
            engine = MockEngine(
                serving.max_batch, serving.max_seq_len, config.buckets, delay, serving.prefill_chunk
            )
            return engine, ByteTokenizer()

        return mock_factory, info
    from grok_worker.engine.model_engine import model_factory

    factory, cfg = model_factory(config, random_weights=args.random_weights)
    info.preset = cfg.name
    for name in DIMENSION_NAMES:  # ModelInfo's own max_seq_len is the serving length (_fill_limits)
        if name != "max_seq_len":
            setattr(info, name, getattr(cfg, name))
    return factory, info


def _fill_limits(info: pb.ModelInfo, config: ResolvedConfig) -> None:
    """Limits known from the config, so ModelInfo shows them while the worker is still loading."""
    serving = config.worker.serving
    info.max_seq_len = serving.max_seq_len
    info.max_batch = serving.max_batch
    info.max_prompt_len = config.buckets[-1]
    info.prefill_buckets.extend(config.buckets)
    info.max_stop_strings = serving.max_stop_strings


def _step_port(args: argparse.Namespace, config: ResolvedConfig) -> int:
    if args.step_port:
        return int(args.step_port)
    _, _, port = config.group.coordinator_address.rpartition(":")
    if not port.isdigit():
        raise ConfigError(f"GROK_COORDINATOR_ADDRESS={config.group.coordinator_address!r} must be host:port")
    return int(port) + STEP_PORT_OFFSET


def server_options(config: ResolvedConfig, security: Security) -> ServerOptions:
    serving = config.worker.serving
    return ServerOptions(
        port=serving.port,
        bind_host=security.bind_host,
        metrics_port=serving.metrics_port or None,
        http_port=serving.http_port or None,
        health_port=security.health_port,
        health_host=security.health_host,
        tls=security.tls,
        tokens=security.tokens,
        max_queue=serving.max_queue,
        max_stop_strings=serving.max_stop_strings,
        drain_grace_seconds=serving.drain_grace_seconds,
    )


async def _serve_leader(
    config: ResolvedConfig,
    factory: EngineFactory,
    info: pb.ModelInfo,
    step_port: int,
    security: Security,
) -> int:
    serving = config.worker.serving
    options = server_options(config, security)
    _fill_limits(info, config)
    server = WorkerServer(info, options)
    stop = asyncio.Event()
    install_signals(stop)
    try:
        await server.start()
    except OSError as err:
        print(f"grok-worker serve: {err}", file=sys.stderr)
        return 1
    loop = asyncio.get_running_loop()
    broadcaster: StepBroadcaster | None = None

    def lost(message: str) -> None:
        asyncio.run_coroutine_threadsafe(server.fail(message), loop)

    wrapped = factory
    if config.group.multi_host:
        group = config.group
        broadcaster = StepBroadcaster(
            step_port, group.num_processes - 1, lost, security.step_host, security.group_key, group.group_name
        )

        def wrapped(progress: ProgressFn) -> tuple[Engine, Tokenizer | None]:
            assert broadcaster is not None
            engine, tokenizer = factory(progress)
            return BroadcastingEngine(engine, broadcaster), tokenizer

    load = asyncio.create_task(
        server.load(
            wrapped, (lambda: broadcaster.wait_for_followers(JOIN_TIMEOUT_SECONDS)) if broadcaster else None
        )
    )
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(server.failed.wait())]
    try:
        await asyncio.wait([load, *waiters], return_when=asyncio.FIRST_COMPLETED)
        if load.done() and load.exception() is not None:
            exc = load.exception()
            log.error("loading failed: %s", exc)
            await server.fail(f"loading failed: {exc}")
        elif load.done():
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if server.failed.is_set():
            await asyncio.sleep(FAILURE_LINGER_SECONDS)
            await server.server.stop(0.5)
            exit_now(1)  # the engine thread may be stuck in a collective with the lost host
        if not load.done():
            # Loading runs in a thread that cannot be interrupted; nothing is in flight yet.
            log.info("stopped while loading; exiting")
            await server.server.stop(0)
            exit_now(0)
        log.info("draining (grace %.1fs)", serving.drain_grace_seconds)
        await server.drain()
        return 0
    finally:
        for w in waiters:
            w.cancel()
        if broadcaster is not None:
            broadcaster.close()
