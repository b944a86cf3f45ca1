"""Multi-host step broadcast: the leader sends every engine call to the followers over TCP.

Why a socket and not `multihost_utils.broadcast_one_to_all`: a step's inputs are a few integers
(a prompt once per request), so a device collective per step buys nothing, needs fixed shapes,
and hangs forever when a peer dies. A TCP connection per follower reports a lost host at once
(EOF), which lets the leader fail fast and report NOT_SERVING; the model's own collectives still
keep the hosts in lock step inside each compiled step.

Data flow: leader process 0 wraps its engine in `BroadcastingEngine`; each `prefill`,
`begin_prefill`, `prefill_chunk`, `insert`, `decode`, `decode_with_chunk` and `release` is first
sent as one length-prefixed JSON frame ({"op": name, ...arguments}) to every follower, then run
locally. A follower (`run_follower`) connects to the leader, says hello with its process id, then
replays each frame on its own engine (same compiled step, same inputs, same sampling keys) and
discards the results. `shutdown` ends the followers cleanly; EOF without it is a lost leader.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from grok_worker.engine.api import Engine, EngineSpec, Prefix, ProgressFn, SampledToken, SamplingParams

log = logging.getLogger(__name__)
_HEADER = struct.Struct(">I")


class HostLostError(RuntimeError):
    """A host of the group disconnected; the group cannot continue."""


def _send_frame(sock: socket.socket, message: dict[str, Any]) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    sock.sendall(_HEADER.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise HostLostError("connection closed")
        chunks += chunk
    return bytes(chunks)


def _recv_frame(sock: socket.socket) -> dict[str, Any]:
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    message: dict[str, Any] = json.loads(_recv_exact(sock, size))
    return message


class StepBroadcaster:
    """Leader side: accepts one connection per follower and sends them every step."""

    def __init__(
        self, port: int, num_followers: int, on_lost: Callable[[str], None], host: str = "0.0.0.0"
    ) -> None:
        self.num_followers = num_followers
        self._on_lost = on_lost
        self._server = socket.create_server((host, port), reuse_port=False)
        self.port = int(self._server.getsockname()[1])
        self._peers: dict[int, socket.socket] = {}
        self._closing = False
        self._lock = threading.Lock()

    def wait_for_followers(self, timeout: float) -> None:
        """Accept every follower's hello; TimeoutError names the hosts still missing."""
        deadline = time.monotonic() + timeout
        while len(self._peers) < self.num_followers:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = sorted(set(range(1, self.num_followers + 1)) - set(self._peers))
                raise TimeoutError(f"hosts {missing} did not join the step broadcast within {timeout:.0f}s")
            self._server.settimeout(remaining)
            try:
                conn, addr = self._server.accept()
            except TimeoutError:
                continue
            conn.settimeout(30.0)
            hello = _recv_frame(conn)
            conn.settimeout(None)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pid = int(hello["process_id"])
            self._peers[pid] = conn
            log.info("host %d joined from %s", pid, addr)
            threading.Thread(
                target=self._monitor, args=(pid, conn), name=f"monitor-host-{pid}", daemon=True
            ).start()

    def _monitor(self, pid: int, conn: socket.socket) -> None:
        try:
            while conn.recv(1):
                pass
        except OSError:
            pass
        if not self._closing:
            self._on_lost(f"host {pid} of the group disconnected; the group must be recreated")

    def send(self, message: dict[str, Any]) -> None:
        with self._lock:
            for pid, conn in self._peers.items():
                try:
                    _send_frame(conn, message)
                except OSError as exc:
                    raise HostLostError(f"host {pid} of the group is unreachable: {exc}") from exc

    def close(self) -> None:
        """Tell followers to exit, then close every connection."""
        if self._closing:
            return
        with contextlib.suppress(HostLostError):
            self.send({"op": "shutdown"})
        self._closing = True
        for conn in self._peers.values():
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)  # wakes the monitor thread blocked in recv()
            conn.close()
        self._server.close()


class BroadcastingEngine:
    """An `Engine` that sends each call to the followers before running it locally."""

    def __init__(self, inner: Engine, broadcaster: StepBroadcaster) -> None:
        self.inner = inner
        self.broadcaster = broadcaster

    @property
    def spec(self) -> EngineSpec:
        return self.inner.spec

    def warmup(self, progress: ProgressFn | None = None) -> None:
        self.inner.warmup(progress)  # every host warms up on its own, in the same order

    def prefill(self, prompt_ids: Sequence[int], sampling: SamplingParams) -> tuple[Prefix, SampledToken]:
        s = sampling
        self.broadcaster.send(
            {"op": "prefill", "ids": list(prompt_ids), "sampling": [s.temperature, s.top_p, s.top_k, s.seed]}
        )
        return self.inner.prefill(prompt_ids, sampling)

    def begin_prefill(self, prompt_ids: Sequence[int], sampling: SamplingParams) -> Prefix:
        s = sampling
        self.broadcaster.send(
            {
                "op": "begin_prefill",
                "ids": list(prompt_ids),
                "sampling": [s.temperature, s.top_p, s.top_k, s.seed],
            }
        )
        return self.inner.begin_prefill(prompt_ids, sampling)

    def prefill_chunk(self, prefix: Prefix) -> SampledToken | None:
        self.broadcaster.send({"op": "prefill_chunk"})
        return self.inner.prefill_chunk(prefix)

    def insert(self, prefix: Prefix, slot: int) -> None:
        self.broadcaster.send({"op": "insert", "slot": slot})
        self.inner.insert(prefix, slot)

    def decode(self) -> list[SampledToken]:
        self.broadcaster.send({"op": "decode"})
        return self.inner.decode()

    def decode_with_chunk(self, prefix: Prefix) -> tuple[list[SampledToken], SampledToken | None]:
        self.broadcaster.send({"op": "decode_with_chunk"})
        return self.inner.decode_with_chunk(prefix)

    def release(self, slot: int) -> None:
        self.broadcaster.send({"op": "release", "slot": slot})
        self.inner.release(slot)


class StepFollower:
    """Follower side: connect to the leader, then yield its frames."""

    def __init__(self, leader_host: str, port: int, process_id: int) -> None:
        self.leader = (leader_host, port)
        self.process_id = process_id
        self._sock: socket.socket | None = None

    def connect(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                sock = socket.create_connection(self.leader, timeout=5.0)
                break
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"could not reach the leader's step broadcast at {self.leader[0]}:{self.leader[1]} "
                        f"within {timeout:.0f}s: {exc}"
                    ) from exc
                time.sleep(0.2)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _send_frame(sock, {"process_id": self.process_id})
        self._sock = sock

    def frames(self) -> Iterator[dict[str, Any]]:
        assert self._sock is not None, "connect() first"
        while True:
            try:
                message = _recv_frame(self._sock)
            except (HostLostError, OSError) as exc:
                raise HostLostError(f"lost the leader: {exc}") from exc
            if message.get("op") == "shutdown":
                return
            yield message

    def close(self) -> None:
        """Leave the group: shutdown() first, so a thread blocked in recv() on this socket wakes
        with end-of-stream (close() alone does not interrupt a blocked recv on Linux)."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()


def _sampling(frame: dict[str, Any]) -> SamplingParams:
    t, p, k, seed = frame["sampling"]
    return SamplingParams(float(t), float(p), int(k), int(seed))


def run_follower(engine: Engine, follower: StepFollower) -> None:
    """Replay the leader's engine calls until it shuts down; HostLostError if it vanishes.

    The leader prefills one prompt at a time (whole, or chunk by chunk, each chunk alone or fused
    with a decode step) and inserts it before starting the next, so one pending prefix is enough."""
    prefix: Prefix | None = None
    for frame in follower.frames():
        op = frame["op"]
        if op == "prefill":
            prefix, _ = engine.prefill(frame["ids"], _sampling(frame))
        elif op == "begin_prefill":
            prefix = engine.begin_prefill(frame["ids"], _sampling(frame))
        elif op == "prefill_chunk":
            assert prefix is not None, "prefill_chunk before begin_prefill"
            engine.prefill_chunk(prefix)
        elif op == "insert":
            assert prefix is not None, "insert before prefill"
            engine.insert(prefix, int(frame["slot"]))
            prefix = None
        elif op == "decode":
            engine.decode()
        elif op == "decode_with_chunk":
            assert prefix is not None, "decode_with_chunk before begin_prefill"
            engine.decode_with_chunk(prefix)
        elif op == "release":
            engine.release(int(frame["slot"]))
        else:
            raise ValueError(f"unknown step op {op!r} from the leader (version mismatch?)")
