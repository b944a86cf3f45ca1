"""A two-process group (mock engine) whose step channel is authenticated with a group key.

The leader starts alone; a peer without the key connects to its step port and is dropped; a
follower with the wrong key is told why and exits 1; the follower with the right key joins and the
group serves. The key never appears in any process's output.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from grok_worker.client import GrokClient
from grok_worker.server.local import free_port, spawn_worker, wait_serving

pytestmark = [pytest.mark.multiprocess, pytest.mark.slow]

KEY = "group-key-0123456789-abcdefghij"


def member(pid: int, key_file: Path, coordinator: int, step: int) -> subprocess.Popen[str]:
    env = {
        "GROK_NUM_PROCESSES": "2",
        "GROK_PROCESS_ID": str(pid),
        "GROK_COORDINATOR_ADDRESS": f"127.0.0.1:{coordinator}",
        "GROK_GROUP_NAME": "secure-group-0",
    }
    return spawn_worker(
        free_port(),
        "--engine", "mock", "--max-seq-len", "64", "--prefill-buckets", "8,16", "--metrics-port", "0",
        "--step-port", str(step), "--group-secret-file", str(key_file),
        env=env,
    )  # fmt: skip


def intrude(step: int) -> bytes:
    """Connect like a follower without the key; returns what the leader sent after the answer."""
    deadline = time.monotonic() + 120
    while True:  # the leader opens its step port once its engine is built
        try:
            sock = socket.create_connection(("127.0.0.1", step), timeout=60)
            break
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "the leader never opened its step port"
            time.sleep(0.1)
    with sock:
        header = sock.recv(4, socket.MSG_WAITALL)
        (size,) = struct.unpack(">I", header)
        hello = json.loads(sock.recv(size, socket.MSG_WAITALL))
        assert hello["protocol"] == "grok-step-v1"
        answer = json.dumps({"process_id": 1, "mac": "ab" * 32}).encode()
        sock.sendall(struct.pack(">I", len(answer)) + answer)
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
        return reply


def test_only_a_member_with_the_group_key_joins(tmp_path: Path) -> None:
    key, wrong = tmp_path / "step-key", tmp_path / "wrong-key"
    key.write_text(KEY + "\n")
    wrong.write_text("not-the-group-key-but-long-enough\n")
    coordinator, step = free_port(), free_port()
    leader = member(0, key, coordinator, step)
    procs = [leader]
    try:
        assert b"wrong MAC" in intrude(step)
        impostor = member(1, wrong, coordinator, step)
        procs.append(impostor)
        assert impostor.wait(120) == 1
        impostor_log = impostor.stdout.read() if impostor.stdout else ""
        assert "the leader refused this host: a wrong MAC" in impostor_log
        follower = member(1, key, coordinator, step)
        procs.append(follower)
        leader_port = int(leader.args[leader.args.index("--port") + 1])
        wait_serving(f"127.0.0.1:{leader_port}", leader, timeout=120)
        with GrokClient(f"127.0.0.1:{leader_port}", timeout=30) as client:
            assert client.generate("abc", max_tokens=3).text == "def"
        leader.terminate()
        assert leader.wait(30) == 0
        assert follower.wait(30) == 0
        logs = [impostor_log] + [p.stdout.read() if p.stdout else "" for p in (leader, follower)]
        assert logs[1].count("dropped peer") == 2
        assert "host 1 joined" in logs[1]
        assert all(KEY not in text and "not-the-group-key" not in text for text in logs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)
