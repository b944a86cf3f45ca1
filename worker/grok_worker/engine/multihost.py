"""Multi-host step broadcast: the leader sends every engine call to the followers over TCP.

Why a socket and not `multihost_utils.broadcast_one_to_all`: a step's inputs are a few integers
(a prompt once per request), so a device collective per step buys nothing, needs fixed shapes,
and hangs forever when a peer dies. A TCP connection per follower reports a lost host at once
(EOF), which lets the leader fail fast and report NOT_SERVING; the model's own collectives still
keep the hosts in lock step inside each compiled step.

Data flow: leader process 0 wraps its engine in `BroadcastingEngine`; each `prefill`,
`begin_prefill`, `prefill_chunk`, `insert`, `decode`, `decode_with_chunk` and `release` is first
sent as one length-prefixed JSON frame ({"op": name, ...arguments}; `step_wire`) to every follower,
then run locally. A follower (`run_follower`) connects to the leader, answers its handshake
(`step_handshake`: an HMAC of a fresh nonce under the group's key, and its process id), then
replays each frame on its own engine (same compiled step, same inputs, same sampling keys) and
discards the results. `shutdown` ends the followers cleanly; EOF without it is a lost leader.

The leader hands every accepted connection to a handshake thread (at most `MAX_PENDING_HANDSHAKES`
at once; more are closed at once), so a peer that stalls, sends garbage, a huge length, a wrong MAC
or an id out of range is dropped and logged without holding up the others. Slots are assigned on
the accepting thread only, so two peers can never share one. Once every follower has joined, the
listening socket is closed: nobody else can connect.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from grok_worker.engine.api import Engine, EngineSpec, Prefix, ProgressFn, SampledToken, SamplingParams
from grok_worker.engine.step_handshake import (
    HandshakeRefusedError,
    LeaderBusyError,
    answer,
    challenge,
    check_answer,
    verdict,
)
from grok_worker.engine.step_wire import FrameError, HostLostError, recv_frame, send_frame

__all__ = ["BroadcastingEngine", "HostLostError", "StepBroadcaster", "StepFollower", "run_follower"]

log = logging.getLogger(__name__)

#: Connections being handshaken at once; beyond that new ones are closed unread.
MAX_PENDING_HANDSHAKES = 16
_warned_unauthenticated = threading.Event()


def warn_unauthenticated_once(port: int) -> None:
    if not _warned_unauthenticated.is_set():
        _warned_unauthenticated.set()
        log.warning(
            "the step channel on port %d is not authenticated (no security.group_secret_file): "
            "any pod that can reach it can take a follower's slot",
            port,
        )


_Joined = tuple[socket.socket, Any, int | None, str]


class StepBroadcaster:
    """Leader side: admits one authenticated connection per follower and sends them every step."""

    def __init__(
        self,
        port: int,
        num_followers: int,
        on_lost: Callable[[str], None],
        host: str = "0.0.0.0",
        key: bytes | None = None,
        group: str = "",
    ) -> None:
        self.num_followers = num_followers
        self._on_lost = on_lost
        self._key = key
        self._group = group
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._server = socket.create_server((host, port), family=family, reuse_port=False)
        self.port = int(self._server.getsockname()[1])
        if key is None:
            warn_unauthenticated_once(self.port)
        self._peers: dict[int, socket.socket] = {}
        self._closing = False
        self._lock = threading.Lock()
        self._results: queue.Queue[_Joined] = queue.Queue()
        self._pending: set[socket.socket] = set()

    def wait_for_followers(self, timeout: float) -> None:
        """Admit every follower; TimeoutError names the hosts still missing."""
        deadline = time.monotonic() + timeout
        try:
            while len(self._peers) < self.num_followers:
                self._admit_finished()
                if len(self._peers) >= self.num_followers:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    missing = sorted(set(range(1, self.num_followers + 1)) - set(self._peers))
                    raise TimeoutError(
                        f"hosts {missing} did not join the step broadcast within {timeout:.0f}s"
                    )
                self._accept_one(min(remaining, 0.1))
        finally:
            self._drop_pending()
        self._server.close()  # the group is complete: nobody else may connect

    def _accept_one(self, wait: float) -> None:
        self._server.settimeout(wait)
        try:
            conn, addr = self._server.accept()
        except TimeoutError:
            return
        if len(self._pending) >= MAX_PENDING_HANDSHAKES:
            log.warning("step channel: dropped %s: too many handshakes in progress", addr)
            conn.close()
            return
        self._pending.add(conn)
        threading.Thread(
            target=self._handshake, args=(conn, addr), name="step-handshake", daemon=True
        ).start()

    def _handshake(self, conn: socket.socket, addr: Any) -> None:
        """On its own thread: challenge the peer and check its answer; the verdict is the caller's."""
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            nonce = challenge(conn)
            pid = check_answer(conn, nonce, self._key, self._group, self.num_followers)
            self._results.put((conn, addr, pid, ""))
        except HandshakeRefusedError as err:
            self._results.put((conn, addr, None, str(err)))
        except OSError as err:
            self._results.put((conn, addr, None, f"connection failed: {err.strerror or err}"))

    def _admit_finished(self) -> None:
        while True:
            try:
                conn, addr, pid, reason = self._results.get_nowait()
            except queue.Empty:
                return
            self._pending.discard(conn)
            if pid is not None and pid in self._peers:
                pid, reason = None, f"process id {pid} has already joined"
            if pid is None:
                log.warning("step channel: dropped peer %s: %s", addr, reason)
                with contextlib.suppress(OSError):
                    verdict(conn, reason)
                conn.close()
                continue
            try:
                verdict(conn, None)
            except OSError as err:
                log.warning("step channel: host %d from %s left during the handshake: %s", pid, addr, err)
                conn.close()
                continue
            conn.settimeout(None)
            self._peers[pid] = conn
            log.info("host %d joined from %s", pid, addr)
            threading.Thread(
                target=self._monitor, args=(pid, conn), name=f"monitor-host-{pid}", daemon=True
            ).start()

    def _drop_pending(self) -> None:
        """Close connections still in their handshake (their threads end with an error)."""
        for conn in list(self._pending):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._pending.clear()

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
                    send_frame(conn, message)
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
    """Follower side: connect to the leader, answer its handshake, then yield its frames."""

    def __init__(
        self, leader_host: str, port: int, process_id: int, key: bytes | None = None, group: str = ""
    ) -> None:
        self.leader = (leader_host, port)
        self.process_id = process_id
        self._key = key
        self._group = group
        self._sock: socket.socket | None = None

    def connect(self, timeout: float) -> None:
        """Reach the leader and join; HandshakeRefusedError when it refuses this host. A leader that
        is not listening yet, or too busy to handshake, is tried again until `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._sock = self._join(deadline)
                return
            except (OSError, LeaderBusyError) as exc:
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"could not join the leader's step broadcast at {self.leader[0]}:{self.leader[1]} "
                        f"within {timeout:.0f}s: {exc}"
                    ) from exc
                time.sleep(0.2)

    def _join(self, deadline: float) -> socket.socket:
        sock = socket.create_connection(self.leader, timeout=5.0)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            answer(sock, self._key, self._group, self.process_id, max(1.0, deadline - time.monotonic()))
        except BaseException:
            sock.close()
            raise
        return sock

    def frames(self) -> Iterator[dict[str, Any]]:
        assert self._sock is not None, "connect() first"
        while True:
            try:
                message = recv_frame(self._sock)
            except (HostLostError, FrameError, OSError) as exc:
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
