"""`grok-worker serve` with its security flags as a real process, and the `grok` CLI against it.

One worker serves mutual TLS and bearer tokens on loopback (`--bind 127.0.0.1`) with a plaintext
health-only port; the CLI's --ca/--cert/--key and $GROK_TOKEN reach it; the token never appears
in the worker's output or the CLI's.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest

from grok_worker.client import GrokClient
from grok_worker.server.local import free_port, spawn_worker, wait_serving
from tests.pki import Pki, kubelet_secret_dir, make_pki

TOKEN = "process-test-token-0123456789"


@dataclass
class Worker:
    proc: subprocess.Popen[str]
    port: int
    health_port: int
    metrics_port: int
    pki: Pki

    def grok(
        self, *args: str, token: str | None = TOKEN, tls: bool = True
    ) -> subprocess.CompletedProcess[str]:
        grok = shutil.which("grok")
        assert grok, "the grok console script must be on PATH (the venv's bin)"
        flags = ["--target", f"localhost:{self.port}", "--timeout", "20"]
        if tls:
            flags += [
                "--ca",
                str(self.pki.ca),
                "--cert",
                str(self.pki.client_cert),
                "--key",
                str(self.pki.client_key),
            ]
        env = {k: v for k, v in os.environ.items() if k != "GROK_TOKEN"}
        if token is not None:
            env["GROK_TOKEN"] = token
        return subprocess.run(
            [grok, *args, *flags], capture_output=True, text=True, timeout=60, env=env, check=False
        )


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    folder = tmp_path_factory.mktemp("secure-worker")
    pki = make_pki(folder / "pki")
    kubelet_secret_dir(folder / "tokens", {"ci": TOKEN + "\n"})
    port, health, metrics = free_port(), free_port(), free_port()
    proc = spawn_worker(
        port,
        "--engine", "mock", "--max-seq-len", "64", "--prefill-buckets", "8,16",
        "--metrics-port", str(metrics),
        "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
        "--tls-client-ca", str(pki.ca),
        "--tokens-dir", str(folder / "tokens"),
        "--health-port", str(health),
    )  # fmt: skip
    try:
        wait_serving(f"127.0.0.1:{health}", proc)
        yield Worker(proc, port, health, metrics, pki)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def test_the_cli_generates_over_mutual_tls_with_a_token_from_the_environment(worker: Worker) -> None:
    result = worker.grok("generate", "abc", "--max-tokens", "3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "def"
    info = worker.grok("info")
    assert info.returncode == 0, info.stderr
    assert '"preset": "mock"' in info.stdout


def test_the_cli_without_a_token_or_a_client_certificate_is_refused(worker: Worker) -> None:
    missing = worker.grok("generate", "abc", token=None)
    assert missing.returncode == 1
    assert "UNAUTHENTICATED" in missing.stderr
    wrong = worker.grok("generate", "abc", token="not-" + TOKEN)
    assert wrong.returncode == 1
    assert "UNAUTHENTICATED" in wrong.stderr
    assert TOKEN not in wrong.stderr + wrong.stdout
    plaintext = worker.grok("generate", "abc", tls=False)
    assert plaintext.returncode == 1
    assert "UNAVAILABLE" in plaintext.stderr
    health = worker.grok("health", token=None)  # health is exempt from tokens, not from mTLS
    assert (health.returncode, health.stdout.strip()) == (0, "SERVING")


def test_the_health_port_is_plaintext_health_only(worker: Worker) -> None:
    with GrokClient(f"127.0.0.1:{worker.health_port}", timeout=10) as client:
        assert client.health() == "SERVING"
        with pytest.raises(grpc.RpcError) as err:
            client.generate("abc", max_tokens=2)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_metrics_listen_on_the_bind_address_only(worker: Worker) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=10) as response:
        assert b"grok_serving" in response.read()
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/", timeout=10)
    assert err.value.code == 404
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.2", worker.metrics_port), timeout=5),
    ):
        pass


def test_the_token_never_reaches_the_worker_log(worker: Worker) -> None:
    worker.grok("generate", "abc", token="not-" + TOKEN)
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(30) == 0
    output = worker.proc.stdout.read() if worker.proc.stdout else ""
    assert "mutual TLS, bearer tokens" in output
    assert "accepting 1 bearer tokens" in output
    assert TOKEN not in output


def test_a_bad_security_setting_exits_2_naming_it() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "grok_worker",
            "serve",
            "--engine",
            "mock",
            "--tokens-dir",
            "/nonexistent/tokens",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "security.tokens_dir (--tokens-dir): /nonexistent/tokens is not a directory" in result.stderr
