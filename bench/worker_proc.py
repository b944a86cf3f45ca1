"""Start and stop a real `grok-worker serve` process for the startup and serving benchmarks.

The worker runs as its own process (as in a pod), on a free loopback port, serving a checkpoint
made by `bench.weights.ensure_checkpoint`; its log goes to a file in the work directory so a
failure can be diagnosed. `WorkerProcess` is a context manager: leaving it sends SIGTERM (the
worker drains and exits) and kills the process if it does not exit in time.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

WORKER = [sys.executable, "-m", "grok_worker", "serve"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class WorkerProcess:
    def __init__(
        self,
        preset: str,
        checkpoint: Path,
        log_dir: Path,
        *,
        max_batch: int = 8,
        max_seq_len: int = 512,
        buckets: tuple[int, ...] = (32, 128),
        extra: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"worker-{preset}-{self.port}.log"
        self.argv = [
            *WORKER,
            "--preset",
            preset,
            "--checkpoint",
            str(checkpoint),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--metrics-port",
            "0",
            "--max-batch",
            str(max_batch),
            "--max-seq-len",
            str(max_seq_len),
            "--prefill-buckets",
            ",".join(map(str, buckets)),
            "--drain-grace",
            "2",
            "--log-level",
            "WARNING",
            *extra,
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self) -> WorkerProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for name in list(env):
            if name.startswith("GROK_"):  # the bench passes everything by flags
                del env[name]
        with self.log_path.open("wb") as log:
            self.started_at = time.perf_counter()
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        return self

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"worker exited with {self.proc.returncode}; log {self.log_path}:\n{tail}")

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
