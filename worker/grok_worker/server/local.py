"""Start a server in the current event loop around a ready engine (tests, benchmarks, demos).

Data flow: engine (+ tokenizer) -> warmup in a thread -> `WorkerServer` on a free loopback port,
SERVING. The caller drains it with `await server.drain(grace)`. Also helpers to run
`grok-worker serve` as a child process on loopback and wait for it to report SERVING.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import grpc

from grok.v1 import generation_pb2 as pb
from grok_worker.engine.api import Engine
from grok_worker.engine.text import Tokenizer
from grok_worker.server.app import ServerOptions, WorkerServer
from grok_worker.server.cert_reload import DEFAULT_POLL_SECONDS
from grok_worker.server.tls import TLSFiles
from grok_worker.server.tokens import TokenStore


async def start_local_server(
    engine: Engine,
    tokenizer: Tokenizer | None,
    *,
    max_queue: int = 16,
    max_stop_strings: int = 4,
    metrics: bool = False,
    http: bool = False,
    preset: str = "mock",
    health_port: bool = False,
    tls: TLSFiles | None = None,
    tokens: TokenStore | None = None,
    tls_poll_seconds: float = DEFAULT_POLL_SECONDS,
) -> WorkerServer:
    options = ServerOptions(
        port=0,
        bind_host="127.0.0.1",
        metrics_port=0 if metrics else None,
        http_port=0 if http else None,
        health_port=0 if health_port else None,
        tls=tls,
        tls_poll_seconds=tls_poll_seconds,
        tokens=tokens,
        max_queue=max_queue,
        max_stop_strings=max_stop_strings,
        drain_grace_seconds=5.0,
    )
    server = WorkerServer(pb.ModelInfo(preset=preset, num_hosts=1), options)
    await server.start()
    await server.load(lambda progress: (engine, tokenizer))
    return server


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for tests and local runs)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def spawn_worker(port: int, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`grok-worker serve --port PORT ARGS...` on loopback as a child process (output piped)."""
    cmd = [sys.executable, "-m", "grok_worker", "serve", "--port", str(port), "--bind", "127.0.0.1", *args]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})}
    )


def wait_serving(target: str, proc: subprocess.Popen[str] | None = None, timeout: float = 120) -> None:
    """Poll grpc.health.v1 until SERVING; AssertionError (with the process output) otherwise."""
    from grok_worker.client import GrokClient

    deadline = time.monotonic() + timeout
    with GrokClient(target, timeout=2) as client:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                output = proc.stdout.read() if proc.stdout else ""
                raise AssertionError(f"worker exited with {proc.returncode}:\n{output}")
            try:
                if client.health() == "SERVING":
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise AssertionError(f"worker at {target} did not become SERVING within {timeout}s")
