"""`grok-worker serve` as a real process: config errors, health while loading, SIGTERM drain."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from grok.v1 import generation_pb2 as pb
from grok_worker.client import GrokClient
from grok_worker.server.local import free_port, spawn_worker, wait_serving


def serve_mock(port: int, *extra: str) -> subprocess.Popen[str]:
    return spawn_worker(
        port,
        "--engine",
        "mock",
        "--max-seq-len",
        "64",
        "--prefill-buckets",
        "8,16,32",
        "--metrics-port",
        "0",
        *extra,
    )


@pytest.fixture
def worker() -> Iterator[tuple[subprocess.Popen[str], GrokClient]]:
    port = free_port()
    proc = serve_mock(port, "--mock-step-delay", "0.05", "--drain-grace", "10")
    client = GrokClient(f"127.0.0.1:{port}", timeout=20)
    try:
        wait_serving(f"127.0.0.1:{port}", proc)
        yield proc, client
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_sigterm_drains_in_flight_requests_then_exits_zero(
    worker: tuple[subprocess.Popen[str], GrokClient],
) -> None:
    proc, client = worker
    got: list[pb.GenerateStreamResponse] = []

    def consume() -> None:
        got.extend(client.generate_stream("a", max_tokens=12, stop_at_eos=False))

    thread = threading.Thread(target=consume)
    thread.start()
    while not got:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    thread.join(20)
    assert "".join(m.text for m in got) == "bcdefghijklm"
    assert got[-1].finish_reason == pb.FINISH_REASON_LENGTH
    assert proc.wait(20) == 0


def test_a_second_signal_during_the_drain_exits_at_once(
    worker: tuple[subprocess.Popen[str], GrokClient],
) -> None:
    proc, client = worker
    got: list[pb.GenerateStreamResponse] = []
    errors: list[grpc.RpcError] = []

    def consume() -> None:
        try:
            got.extend(client.generate_stream("a", max_tokens=60, stop_at_eos=False))  # 3 s of steps
        except grpc.RpcError as err:
            errors.append(err)

    thread = threading.Thread(target=consume)
    thread.start()
    while not got:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)  # drain: the stream would have 10 s to finish
    time.sleep(0.2)
    assert proc.poll() is None
    proc.send_signal(signal.SIGINT)
    assert proc.wait(5) == 128 + signal.SIGINT
    thread.join(20)
    assert len(got) < 60
    assert errors  # the client sees the connection end rather than a quiet OK


def test_serve_with_an_http_port_answers_openai_requests_beside_grpc() -> None:
    port, http_port = free_port(), free_port()
    proc = serve_mock(port, "--http-port", str(http_port))
    try:
        wait_serving(f"127.0.0.1:{port}", proc)
        body = json.dumps({"prompt": "abc", "max_tokens": 3, "temperature": 0}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{http_port}/v1/completions", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=20) as response:
            reply = json.loads(response.read())
        assert reply["choices"][0]["text"] == "def"
        with GrokClient(f"127.0.0.1:{port}", timeout=20) as client:
            assert client.generate("abc", max_tokens=3).text == "def"
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, output
        # A gRPC server still alive when the interpreter tears itself down makes grpc.aio's own
        # shutdown fail there, printing "Error in sys.excepthook" (grpc/grpc#38679).
        assert "Error in sys.excepthook" not in output, output
        assert "Traceback" not in output, output
    finally:
        if proc.poll() is None:
            proc.kill()


def test_bad_config_file_exits_non_zero_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "worker.json"
    config.write_text(json.dumps({"serving": {"max_batch": 0}}))
    result = subprocess.run(
        [sys.executable, "-m", "grok_worker", "serve", "--engine", "mock", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "serving.max_batch" in result.stderr


def test_bad_group_environment_exits_non_zero_naming_the_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "grok_worker", "serve", "--engine", "mock"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GROK_NUM_PROCESSES": "2", "GROK_PROCESS_ID": "0", "GROK_COORDINATOR_ADDRESS": ""},
    )
    assert result.returncode == 2
    assert "GROK_COORDINATOR_ADDRESS" in result.stderr


def test_config_file_from_the_environment_is_used(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "worker.json"
    config.write_text(
        json.dumps(
            {
                "serving": {
                    "port": port,
                    "max_batch": 3,
                    "max_seq_len": 48,
                    "prefill_buckets": [8, 16],
                    "metrics_port": 0,
                }
            }
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "grok_worker", "serve", "--engine", "mock", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "GROK_CONFIG_FILE": str(config)},
    )
    try:
        with GrokClient(f"127.0.0.1:{port}", timeout=10) as client:
            wait_serving(f"127.0.0.1:{port}", proc)
            info = client.info()
            assert (info.max_batch, info.max_seq_len, list(info.prefill_buckets)) == (3, 48, [8, 16])
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_leader_waiting_for_its_hosts_is_not_serving_and_exits_promptly_on_sigterm() -> None:
    port = free_port()
    group = {
        "GROK_NUM_PROCESSES": "2",
        "GROK_PROCESS_ID": "0",
        "GROK_COORDINATOR_ADDRESS": f"127.0.0.1:{free_port()}",
    }
    proc = spawn_worker(port, "--engine", "mock", "--metrics-port", "0", "--max-seq-len", "64", env=group)
    try:
        with GrokClient(f"127.0.0.1:{port}", timeout=5) as client:
            deadline = time.monotonic() + 60
            state = 0
            while state != pb.LOAD_STATE_WAITING_FOR_HOSTS and time.monotonic() < deadline:
                try:
                    state = client.info().load_state
                except grpc.RpcError:
                    time.sleep(0.05)
            assert state == pb.LOAD_STATE_WAITING_FOR_HOSTS
            assert client.health() == "NOT_SERVING"
            with pytest.raises(grpc.RpcError) as err:
                client.generate("a", max_tokens=1)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "WAITING_FOR_HOSTS" in (err.value.details() or "")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "grok_worker",
                "serve",
                "--engine",
                "mock",
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--metrics-port",
                "0",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"could not bind the gRPC port 127.0.0.1:{port} (serving.port / --port)" in result.stderr


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        (
            ["--preset", "tiny", "--checkpoint", "/nonexistent/ckpt"],
            "model.checkpoint_path='/nonexistent/ckpt'",
        ),
        (["--preset", "tiny"], "model.checkpoint_path is empty"),
        (["--preset", "huge", "--random-weights"], "model: unknown model preset 'huge'"),
        (
            ["--preset", "tiny", "--random-weights", "--max-seq-len", "100000"],
            "serving.max_seq_len: 100000 exceeds",
        ),
        (["--engine", "mock", "--prefill-buckets", "32,16"], "serving.prefill_buckets: [32, 16] must be"),
        (["--engine", "mock", "--port", "70000"], "serving.port"),
    ],
)
def test_bad_flags_exit_2_naming_the_field(flags: list[str], field: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "grok_worker", "serve", *flags], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert field in result.stderr


def test_follower_serves_only_health_and_stops_promptly_while_waiting_for_its_leader() -> None:
    port = free_port()
    group = {
        "GROK_NUM_PROCESSES": "2",
        "GROK_PROCESS_ID": "1",
        "GROK_COORDINATOR_ADDRESS": f"127.0.0.1:{free_port()}",
    }
    proc = spawn_worker(port, "--engine", "mock", "--metrics-port", "0", "--max-seq-len", "64", env=group)
    try:
        with GrokClient(f"127.0.0.1:{port}", timeout=5) as client:
            deadline = time.monotonic() + 60
            status = ""
            while not status and time.monotonic() < deadline:
                try:
                    status = client.health()
                except grpc.RpcError:
                    time.sleep(0.05)
            assert status == "NOT_SERVING"
            with pytest.raises(grpc.RpcError) as err:
                client.info()
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        time.sleep(0.5)  # let it reach the connect loop
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
