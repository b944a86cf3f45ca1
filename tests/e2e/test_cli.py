"""The `grok` CLI against a running worker (mock engine, real process, real socket)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from grok_worker.server.local import free_port, spawn_worker, wait_serving


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    port = free_port()
    proc = spawn_worker(
        port, "--engine", "mock", "--max-seq-len", "64", "--prefill-buckets", "8,16,32", "--metrics-port", "0"
    )
    try:
        wait_serving(f"127.0.0.1:{port}", proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def grok(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "grok_worker.client.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_generate_streams_text(target: str) -> None:
    result = grok("generate", "--target", target, "--max-tokens", "4", "abc")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "defg\n"
    assert "[length, 4 tokens]" in result.stderr


def test_generate_json_is_one_parseable_response(target: str) -> None:
    result = grok("generate", "--target", target, "--json", "--stop", "z", "w")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["text"] == "xy"
    assert body["finish_reason"] == "FINISH_REASON_STOP"
    assert body["usage"] == {"prompt_tokens": 1, "completion_tokens": 3}


def test_server_errors_print_the_message_and_exit_non_zero(target: str) -> None:
    result = grok("generate", "--target", target, "--top-p", "2", "a")
    assert result.returncode == 1
    assert "INVALID_ARGUMENT: top_p=2.0 must be in (0, 1]" in result.stderr


def test_info_and_health(target: str) -> None:
    info = grok("info", "--target", target)
    assert info.returncode == 0
    assert json.loads(info.stdout)["load_state"] == "LOAD_STATE_SERVING"
    health = grok("health", "--target", target)
    assert (health.returncode, health.stdout.strip()) == (0, "SERVING")


def test_unreachable_target_fails_cleanly() -> None:
    result = grok("health", "--target", f"127.0.0.1:{free_port()}", "--timeout", "1")
    assert result.returncode == 1
    assert "UNAVAILABLE" in result.stderr or "DEADLINE_EXCEEDED" in result.stderr


def test_load_generator_reports_every_level(target: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "grok_worker.client.loadgen",
            "--target",
            target,
            "--concurrency",
            "1,2",
            "--max-tokens",
            "4",
            "--prompt-len",
            "3",
            "--timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line.get("concurrency") for line in lines[:2]] == [1, 2]
    assert [line["completion_tokens"] for line in lines[:2]] == [8, 16]
    assert lines[2]["throughput_ratio"] > 0
