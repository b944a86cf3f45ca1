"""A replica group of two worker processes serving through the leader.

The tiny model runs on one mesh spanning both processes (jax.distributed on loopback with gloo,
two CPU devices each: data=1, expert=2, model=2); the leader broadcasts every step to the follower.
Losing the follower makes the leader report NOT_SERVING, fail requests UNAVAILABLE and exit 1.
The same group with the mock engine (no jax.distributed) checks the clean shutdown path.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from grok.v1 import generation_pb2 as pb
from grok_worker.client import GrokClient
from grok_worker.server.local import free_port, spawn_worker, wait_serving

pytestmark = [pytest.mark.multiprocess, pytest.mark.slow]
LONG = [1, 400, 3, 3, 250, 7, 8, 9, 10, 11]


def group_env(coordinator: int, pid: int, mesh: str) -> dict[str, str]:
    return {
        "GROK_NUM_PROCESSES": "2",
        "GROK_PROCESS_ID": str(pid),
        "GROK_COORDINATOR_ADDRESS": f"127.0.0.1:{coordinator}",
        "GROK_MESH": mesh,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }


def start_group(
    *args: str, mesh: str = "data=1,expert=2,model=2"
) -> tuple[list[subprocess.Popen[str]], list[int]]:
    coordinator, step = free_port(), free_port()
    ports = [free_port(), free_port()]
    procs = [
        spawn_worker(
            ports[pid],
            *args,
            "--step-port",
            str(step),
            "--metrics-port",
            "0",
            env=group_env(coordinator, pid, mesh),
        )
        for pid in (1, 0)
    ][::-1]
    return procs, ports


def stop_all(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


def single_process_greedy(checkpoint: Path, prompt: list[int], n: int) -> list[int]:
    from grok_worker.checkpoint import load_checkpoint
    from grok_worker.engine.model_engine import greedy_reference
    from grok_worker.model_config import PRESETS

    cfg = PRESETS["tiny"]
    return greedy_reference(cfg, load_checkpoint(checkpoint, cfg), prompt, n, 32)


@pytest.fixture
def model_group(checkpoint: Path) -> Iterator[tuple[list[subprocess.Popen[str]], list[int]]]:
    procs, ports = start_group(
        "--preset",
        "tiny",
        "--checkpoint",
        str(checkpoint),
        "--max-batch",
        "2",
        "--max-seq-len",
        "32",
        "--prefill-buckets",
        "16",
        "--prefill-chunk",
        "4",  # prompts are prefilled in chunks of 4, fused with the running slot's decode step
    )
    try:
        yield procs, ports
    finally:
        stop_all(procs)


def test_two_process_group_serves_through_the_leader_and_fails_fast_without_its_follower(
    model_group: tuple[list[subprocess.Popen[str]], list[int]], checkpoint: Path
) -> None:
    (leader, follower), (leader_port, follower_port) = model_group
    wait_serving(f"127.0.0.1:{leader_port}", leader, timeout=400)
    with GrokClient(f"127.0.0.1:{follower_port}", timeout=10) as f:
        assert f.health() == "SERVING"
        with pytest.raises(grpc.RpcError) as err:
            f.generate([1, 2, 3], max_tokens=2)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with GrokClient(f"127.0.0.1:{leader_port}", timeout=60) as client:
        info = client.info()
        assert (info.num_hosts, info.mesh.expert, info.mesh.model) == (2, 2, 2)
        prompt = [1, 17, 99, 5]
        first = client.generate(prompt, max_tokens=6, stop_at_eos=False)
        again = client.generate(prompt, max_tokens=6, stop_at_eos=False)
        assert first.usage.completion_tokens == 6
        assert list(first.token_ids) == list(again.token_ids)
        assert all(0 <= t < 512 for t in first.token_ids)
        # A long prompt arriving while a stream decodes: its 3 chunks ride in the stream's decode
        # steps, which every host runs as the same fused step.
        stream = client.generate_stream(prompt, max_tokens=16, stop_at_eos=False)
        streamed = list(next(stream).token_ids)  # the stream holds its slot and decodes
        with ThreadPoolExecutor(1) as pool:
            long = pool.submit(client.generate, LONG, max_tokens=4, stop_at_eos=False)
            streamed += [t for m in stream for t in m.token_ids]
            together = (streamed, list(long.result().token_ids))

        follower.send_signal(signal.SIGKILL)
        follower.wait(10)
        deadline = time.monotonic() + 10
        status = "SERVING"
        while time.monotonic() < deadline and status == "SERVING":
            try:
                status = client.health()
            except grpc.RpcError:
                status = "GONE"
            time.sleep(0.05)
        assert status == "NOT_SERVING"
        with pytest.raises(grpc.RpcError) as err:
            client.generate(prompt, max_tokens=2)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "host 1" in (err.value.details() or "")
    assert leader.wait(30) == 1
    assert list(first.token_ids) == single_process_greedy(checkpoint, prompt, 6)
    assert together == (
        single_process_greedy(checkpoint, prompt, 16),
        single_process_greedy(checkpoint, LONG, 4),
    )


def test_mock_group_streams_exact_tokens_and_shuts_down_cleanly() -> None:
    procs, (leader_port, _) = start_group(
        "--engine", "mock", "--max-seq-len", "64", "--prefill-buckets", "8,16"
    )
    leader, follower = procs
    try:
        wait_serving(f"127.0.0.1:{leader_port}", leader, timeout=120)
        with GrokClient(f"127.0.0.1:{leader_port}", timeout=30) as client:
            messages = list(client.generate_stream("abc", max_tokens=4))
            assert [m.text for m in messages] == ["d", "e", "f", "g"]
            assert messages[-1].finish_reason == pb.FINISH_REASON_LENGTH
        leader.send_signal(signal.SIGTERM)
        assert leader.wait(30) == 0
        assert follower.wait(30) == 0
    finally:
        stop_all(procs)
