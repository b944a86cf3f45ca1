"""The step channel's authenticated handshake against hostile peers, over loopback TCP.

Each hostile peer connects to the leader's real step port and misbehaves (garbage, a huge length
prefix, a wrong key, a process id that is not an integer or out of range, a slot already taken, a
peer that stalls); it must be dropped and logged without the key, must not take a slot, crash the
leader or stop the real follower from joining; the group then still replays a step exactly.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Callable

import pytest

from grok_worker.engine import multihost, step_handshake
from grok_worker.engine.api import SamplingParams
from grok_worker.engine.mock import MockEngine
from grok_worker.engine.multihost import BroadcastingEngine, StepBroadcaster, StepFollower, run_follower
from grok_worker.engine.step_handshake import HandshakeRefusedError, step_mac
from grok_worker.engine.text import ByteTokenizer

KEY = b"k" * 16 + b"-group-key-for-tests"
GROUP = "demo-group-0"


class Leader:
    """A broadcaster admitting followers on a thread, as the leader does while it loads."""

    def __init__(self, followers: int = 1, key: bytes | None = KEY) -> None:
        self.lost: list[str] = []
        self.broadcaster = StepBroadcaster(0, followers, self.lost.append, "127.0.0.1", key, GROUP)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._wait)
        self.thread.start()

    def _wait(self) -> None:
        try:
            self.broadcaster.wait_for_followers(timeout=30)
        except BaseException as exc:
            self.error = exc

    @property
    def port(self) -> int:
        return self.broadcaster.port


def frame(message: object) -> bytes:
    data = json.dumps(message).encode()
    return struct.pack(">I", len(data)) + data


def recv_frame(sock: socket.socket) -> dict[str, object] | None:
    """The next frame, or None at end of stream."""
    header = sock.recv(4, socket.MSG_WAITALL)
    if len(header) < 4:
        return None
    (size,) = struct.unpack(">I", header)
    message: dict[str, object] = json.loads(sock.recv(size, socket.MSG_WAITALL))
    return message


def hostile(port: int, act: Callable[[socket.socket, bytes], None]) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    hello = recv_frame(sock)
    assert hello is not None
    assert hello["protocol"] == "grok-step-v1"
    act(sock, bytes.fromhex(str(hello["nonce"])))
    return sock


def refused(sock: socket.socket) -> int:
    """Wait until the leader drops `sock` (an error frame, then close; a reset when the peer left
    bytes unread); returns the peer's port, which names it in the leader's log."""
    port = int(sock.getsockname()[1])
    try:
        while (reply := recv_frame(sock)) is not None:
            assert "ok" not in reply
    except ConnectionResetError:
        pass
    sock.close()
    return port


def reason(caplog: pytest.LogCaptureFixture, port: int) -> str:
    lines = [r.getMessage() for r in caplog.records if f"'127.0.0.1', {port})" in r.getMessage()]
    assert len(lines) == 1, lines
    return lines[0]


def answer(pid: object, key: bytes = KEY, group: str = GROUP) -> Callable[[socket.socket, bytes], None]:
    def act(sock: socket.socket, nonce: bytes) -> None:
        mac = step_mac(key, nonce, group, pid) if isinstance(pid, int) else "00" * 32
        sock.sendall(frame({"process_id": pid, "mac": mac}))

    return act


def send(data: bytes) -> Callable[[socket.socket, bytes], None]:
    return lambda sock, nonce: sock.sendall(data)


def join(follower: StepFollower) -> threading.Thread:
    thread = threading.Thread(target=follower.connect, args=(30,))
    thread.start()
    return thread


def replay_one_step(leader: Leader, follower: StepFollower) -> MockEngine:
    """Prefill, insert and two decode steps through the group; returns the follower's engine."""
    engine = MockEngine(max_batch=2)
    errors: list[BaseException] = []

    def replay() -> None:
        try:
            run_follower(engine, follower)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=replay)
    thread.start()
    group = BroadcastingEngine(MockEngine(max_batch=2), leader.broadcaster)
    prefix, _ = group.prefill(ByteTokenizer().encode("abc"), SamplingParams(temperature=1.0, seed=7))
    group.insert(prefix, 0)
    tokens = [group.decode()[0].token for _ in range(2)]
    leader.broadcaster.close()
    thread.join(120)  # the first sampling step compiles (JAX) on both sides
    assert not thread.is_alive()
    assert not errors
    assert not leader.lost
    assert (engine.prefills, engine.decode_steps) == (1, 2)
    assert list(engine._last[:1]) == [tokens[-1]]
    return engine


def test_hostile_peers_are_dropped_and_the_group_still_steps(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    leader = Leader()
    peers = {
        "garbage": refused(hostile(leader.port, send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))),
        "huge length": refused(hostile(leader.port, send(b"\xff\xff\xff\xff" + b"x" * 100))),
        "not json": refused(hostile(leader.port, send(struct.pack(">I", 5) + b"\xff\xfe{[x"))),
        "json list": refused(hostile(leader.port, send(frame([1, 2, 3])))),
        "wrong key": refused(hostile(leader.port, answer(1, key=b"another-group-key-entirely"))),
        "other group": refused(hostile(leader.port, answer(1, group="some-other-group"))),
        "not an integer": refused(hostile(leader.port, answer("1"))),
        "a bool": refused(hostile(leader.port, answer(True))),
        "out of range": refused(hostile(leader.port, answer(7))),
        "leader's own id": refused(hostile(leader.port, answer(0))),
        "closed at once": refused(hostile(leader.port, lambda sock, nonce: sock.shutdown(socket.SHUT_WR))),
    }
    expected = {
        "garbage": "over the limit",
        "huge length": "a frame of 4294967295 bytes is over the limit of 4096",
        "not json": "not JSON",
        "json list": "not a JSON object",
        "wrong key": "wrong MAC",
        "other group": "wrong MAC",
        "not an integer": "malformed",
        "a bool": "malformed",
        "out of range": "process id 7 is not an integer in 1..1",
        "leader's own id": "process id 0 is not an integer in 1..1",
        "closed at once": "connection closed",
    }
    for name, port in peers.items():
        assert expected[name] in reason(caplog, port), name
    stalled = hostile(leader.port, send(b"\x00\x00"))  # half a header, then nothing (slowloris)
    follower = StepFollower("127.0.0.1", leader.port, 1, KEY, GROUP)
    join(follower).join(30)
    leader.thread.join(30)
    assert leader.error is None
    assert set(leader.broadcaster._peers) == {1}
    refused(stalled)  # closed once the group was complete
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", leader.port), timeout=5)  # nobody else may connect
    replay_one_step(leader, follower)
    dropped = [r.getMessage() for r in caplog.records if "dropped peer" in r.getMessage()]
    assert len(dropped) == len(peers)
    assert KEY.decode() not in caplog.text
    assert KEY.hex() not in caplog.text


def test_a_slot_already_taken_is_refused_and_the_other_slot_still_joins() -> None:
    leader = Leader(followers=2)
    first = StepFollower("127.0.0.1", leader.port, 1, KEY, GROUP)
    join(first).join(30)
    duplicate = StepFollower("127.0.0.1", leader.port, 1, KEY, GROUP)
    with pytest.raises(HandshakeRefusedError, match="process id 1 has already joined"):
        duplicate.connect(30)
    second = StepFollower("127.0.0.1", leader.port, 2, KEY, GROUP)
    join(second).join(30)
    leader.thread.join(30)
    assert leader.error is None
    assert set(leader.broadcaster._peers) == {1, 2}
    leader.broadcaster.close()
    first.close()
    second.close()


def test_a_follower_with_the_wrong_key_is_told_why(caplog: pytest.LogCaptureFixture) -> None:
    leader = Leader()
    wrong = StepFollower("127.0.0.1", leader.port, 1, b"not-the-group-key-at-all", GROUP)
    with pytest.raises(HandshakeRefusedError, match="wrong MAC"):
        wrong.connect(30)
    right = StepFollower("127.0.0.1", leader.port, 1, KEY, GROUP)
    join(right).join(30)
    leader.thread.join(30)
    assert leader.error is None
    replay_one_step(leader, right)
    assert "not-the-group-key-at-all" not in caplog.text


def test_a_peer_that_stalls_is_dropped_after_the_handshake_timeout(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(step_handshake, "HANDSHAKE_TIMEOUT_SECONDS", 0.3)
    leader = Leader()
    stalled = hostile(leader.port, send(b"\x00\x00\x00\x10{"))  # promises 16 bytes, sends 1
    assert "in time" in reason(caplog, refused(stalled))
    assert leader.thread.is_alive()
    assert leader.error is None
    follower = StepFollower("127.0.0.1", leader.port, 1, KEY, GROUP)
    join(follower).join(30)
    leader.thread.join(30)
    replay_one_step(leader, follower)


def test_too_many_handshakes_at_once_are_closed_unread_and_the_follower_tries_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(multihost, "MAX_PENDING_HANDSHAKES", 2)
    leader = Leader()
    stalls = [hostile(leader.port, send(b"")) for _ in range(2)]
    extra = socket.create_connection(("127.0.0.1", leader.port), timeout=10)
    assert extra.recv(4096) == b""  # closed without a nonce: no thread, no slot
    follower = StepFollower("127.0.0.1", leader.port, 1, KEY, GROUP)
    joining = join(follower)  # refused while the stalls hold every handshake, so it retries
    joining.join(0.5)
    assert joining.is_alive()
    for sock in stalls:
        sock.close()  # their handshakes end; the follower's next try gets a thread
    joining.join(30)
    leader.thread.join(30)
    assert leader.error is None
    assert set(leader.broadcaster._peers) == {1}
    replay_one_step(leader, follower)


def test_without_a_key_the_channel_warns_once_and_still_drops_malformed_peers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    multihost._warned_unauthenticated.clear()
    leader = Leader(key=None)
    other = StepBroadcaster(0, 1, lambda _: None, "127.0.0.1")
    other.close()
    warnings = [r for r in caplog.records if "not authenticated" in r.getMessage()]
    assert len(warnings) == 1
    port = refused(hostile(leader.port, answer("one")))
    assert "is not an integer" in reason(caplog, port)  # used to crash the leader
    follower = StepFollower("127.0.0.1", leader.port, 1)
    join(follower).join(30)
    leader.thread.join(30)
    assert leader.error is None
    replay_one_step(leader, follower)
