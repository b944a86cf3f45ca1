"""The step channel's handshake: a follower proves it holds the group's key before it gets a slot.

Protocol (frames of `step_wire`):
  leader -> {"protocol": "grok-step-v1", "nonce": <32 random bytes, hex>}
  follower -> {"process_id": <int>, "mac": hex HMAC-SHA256(key, "grok-step-v1" 0 nonce 0 group 0 pid)}
  leader -> {"ok": true}, or {"error": <reason>} and the connection is closed.
The nonce is fresh for every connection, so a recorded answer is worth nothing; the group name and
process id are inside the MAC, so an answer for one group or slot cannot be replayed for another.
The leader checks the MAC in constant time (`hmac.compare_digest`), then that the process id is an
integer in 1..followers; the slot check (not already taken) is the broadcaster's. Every read is
bounded in size (`MAX_HANDSHAKE_FRAME`) and time (`HANDSHAKE_TIMEOUT_SECONDS` for the answer).
Without a key (no `security.group_secret_file`) the MAC is not checked: anyone who can reach the
port and names a free slot joins, as before the handshake existed. Keys and MACs are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import socket
import time
from typing import Any

from grok_worker.engine.step_wire import FrameError, HostLostError, recv_frame, send_frame

PROTOCOL = "grok-step-v1"
NONCE_BYTES = 32
#: Largest handshake frame either side reads.
MAX_HANDSHAKE_FRAME = 4096
#: Seconds a connecting peer has to answer the leader's nonce.
HANDSHAKE_TIMEOUT_SECONDS = 10.0
#: Seconds a follower waits for the leader's verdict once it has answered.
VERDICT_TIMEOUT_SECONDS = 30.0


class HandshakeRefusedError(Exception):
    """The leader refused a peer; the message is safe to log (no key, no MAC)."""


class LeaderBusyError(HandshakeRefusedError):
    """The leader closed the connection before sending its nonce (too many handshakes at once):
    worth another try."""


def step_mac(key: bytes, nonce: bytes, group: str, process_id: int) -> str:
    message = b"\0".join((PROTOCOL.encode(), nonce, group.encode(), str(process_id).encode()))
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def challenge(conn: socket.socket) -> bytes:
    """Leader: send a fresh nonce; returns it."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    send_frame(conn, {"protocol": PROTOCOL, "nonce": nonce.hex()})
    return nonce


def check_answer(conn: socket.socket, nonce: bytes, key: bytes | None, group: str, num_followers: int) -> int:
    """Leader: read the peer's answer to `nonce`; its process id, or HandshakeRefusedError."""
    deadline = time.monotonic() + HANDSHAKE_TIMEOUT_SECONDS
    try:
        answer = recv_frame(conn, MAX_HANDSHAKE_FRAME, deadline)
    except (FrameError, HostLostError, TimeoutError, OSError) as err:
        raise HandshakeRefusedError(f"no valid answer to the handshake: {err}") from None
    pid = answer.get("process_id")
    mac = answer.get("mac")
    if key is not None:
        if not isinstance(mac, str) or not isinstance(pid, int) or isinstance(pid, bool):
            raise HandshakeRefusedError("a malformed answer (process_id and mac are required)")
        expected = step_mac(key, nonce, group, pid)
        if not hmac.compare_digest(expected.encode(), mac.encode(errors="replace")):
            raise HandshakeRefusedError("a wrong MAC (a different group key, or not a member of this group)")
    if not isinstance(pid, int) or isinstance(pid, bool) or not 1 <= pid <= num_followers:
        raise HandshakeRefusedError(f"process id {pid!r} is not an integer in 1..{num_followers}")
    return pid


def verdict(conn: socket.socket, error: str | None) -> None:
    """Leader: tell the peer whether it joined."""
    send_frame(conn, {"ok": True} if error is None else {"error": error})


def answer(sock: socket.socket, key: bytes | None, group: str, process_id: int, timeout: float) -> None:
    """Follower: answer the leader's nonce and wait for its verdict (HandshakeRefusedError if refused).

    `timeout` bounds the wait for the nonce: the leader sends it only once its engine is loaded."""
    try:
        hello = recv_frame(sock, MAX_HANDSHAKE_FRAME, time.monotonic() + timeout)
    except (HostLostError, ConnectionResetError):
        raise LeaderBusyError("the leader closed the step channel before its handshake") from None
    except (FrameError, TimeoutError) as err:
        raise HandshakeRefusedError(f"the leader's step-channel handshake failed: {err}") from None
    try:
        nonce = _nonce(hello)
        mac = step_mac(key, nonce, group, process_id) if key is not None else ""
        send_frame(sock, {"process_id": process_id, "mac": mac})
        result = recv_frame(sock, MAX_HANDSHAKE_FRAME, time.monotonic() + VERDICT_TIMEOUT_SECONDS)
    except HostLostError:
        raise HandshakeRefusedError(
            "the leader closed the step channel during the handshake "
            "(is the same group secret mounted on every host?)"
        ) from None
    except (FrameError, TimeoutError) as err:
        raise HandshakeRefusedError(f"the leader's step-channel handshake failed: {err}") from None
    sock.settimeout(None)
    if result.get("ok") is not True:
        raise HandshakeRefusedError(f"the leader refused this host: {result.get('error', 'no reason given')}")


def _nonce(hello: dict[str, Any]) -> bytes:
    if hello.get("protocol") != PROTOCOL or not isinstance(hello.get("nonce"), str):
        raise FrameError(f"the leader does not speak {PROTOCOL} (a different worker version?)")
    try:
        return bytes.fromhex(hello["nonce"])
    except ValueError:
        raise FrameError("the leader's nonce is not hex") from None
