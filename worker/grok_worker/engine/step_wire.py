"""Frames of the multi-host step channel: a 4-byte big-endian length, then that many bytes of JSON.

Every read is bounded: `recv_frame` refuses a length above `limit` before reading the body (a peer
cannot make the reader allocate gigabytes), and with a `deadline` each read waits only for the time
left until it (a peer that trickles bytes cannot hold the reader longer than that). Anything that is
not a JSON object is a `FrameError`; a closed connection is `HostLostError`.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Any

_HEADER = struct.Struct(">I")
#: Largest step frame (a prompt of token ids is a few hundred KiB at most).
MAX_STEP_FRAME = 64 * 1024 * 1024


class HostLostError(RuntimeError):
    """A host of the group disconnected; the group cannot continue."""


class FrameError(ValueError):
    """The peer sent something that is not a frame of this protocol."""


def send_frame(sock: socket.socket, message: dict[str, Any]) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    sock.sendall(_HEADER.pack(len(data)) + data)


def _recv_exact(sock: socket.socket, n: int, deadline: float | None) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the peer did not send a whole frame in time")
            sock.settimeout(left)
        try:
            chunk = sock.recv(min(n - len(chunks), 1 << 20))
        except TimeoutError:
            raise TimeoutError("the peer did not send a whole frame in time") from None
        if not chunk:
            raise HostLostError("connection closed")
        chunks += chunk
    return bytes(chunks)


def recv_frame(
    sock: socket.socket, limit: int = MAX_STEP_FRAME, deadline: float | None = None
) -> dict[str, Any]:
    """One frame as a dict; FrameError for an oversized or non-JSON-object frame."""
    (size,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size, deadline))
    if size > limit:
        raise FrameError(f"a frame of {size} bytes is over the limit of {limit}")
    try:
        message = json.loads(_recv_exact(sock, size, deadline))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FrameError(f"a frame that is not JSON ({err.__class__.__name__})") from None
    if not isinstance(message, dict):
        raise FrameError("a frame that is not a JSON object")
    return message
