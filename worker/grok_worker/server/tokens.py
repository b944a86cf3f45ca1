"""Bearer tokens accepted by the worker's APIs: a directory of token files, re-read when it changes.

Data flow: `security.tokens_dir` (a mounted Secret: every regular file whose name does not start with
"." holds one token) -> `TokenStore.accepts(presented)`. The store keeps only the SHA-256 digests of
the tokens and compares the presented token's digest with every one of them with
`hmac.compare_digest`, without stopping at the first match, so neither the time nor the length
says which token (or how much of one) matched. At most every `poll_seconds` a call first stats the
directory (names, inode, size, mtime of each entry and the target of kubelet's `..data` symlink);
when that signature changed, the files are read again. Kubelet updates a mounted Secret by writing
a new timestamped directory and swapping the `..data` symlink atomically, so a read sees the old or
the new set, never a mix. Token values never reach a log: only file names and counts do.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from pathlib import Path

from grok_worker.server.file_signature import Signature, file_signature

log = logging.getLogger(__name__)

#: How often (at most) a check looks at the directory for changes.
DEFAULT_POLL_SECONDS = 2.0


class TokenStoreError(ValueError):
    """The token directory cannot be used; the message names the setting."""


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


class TokenStore:
    """Accepted bearer tokens from a directory; thread-safe, re-read when the directory changes."""

    def __init__(self, directory: str | Path, poll_seconds: float = DEFAULT_POLL_SECONDS) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise TokenStoreError(
                f"security.tokens_dir (--tokens-dir): {self.directory} is not a directory; "
                "mount the token Secret there or leave the setting empty"
            )
        self.poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._digests: tuple[bytes, ...] = ()
        self._signature: Signature | None = None
        self._checked = 0.0
        self._refresh(force=True)

    @property
    def count(self) -> int:
        return len(self._digests)

    def accepts(self, presented: str | bytes | None) -> bool:
        """True when `presented` equals one of the tokens (constant time over all of them)."""
        self._maybe_refresh()
        if not presented:
            return False
        digest = _digest(presented.encode() if isinstance(presented, str) else presented)
        matched = False
        for known in self._digests:
            matched |= hmac.compare_digest(digest, known)
        return matched

    def _maybe_refresh(self) -> None:
        if time.monotonic() - self._checked >= self.poll_seconds:
            self._refresh(force=False)

    def _entries(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir() if not p.name.startswith(".") and p.is_file())

    def _signature_now(self) -> Signature:
        data = self.directory / "..data"
        swapped = ((os.readlink(data), 0, 0, 0),) if data.is_symlink() else ()
        return swapped + file_signature(self._entries())

    def _refresh(self, force: bool) -> None:
        with self._lock:
            self._checked = time.monotonic()
            try:
                signature = self._signature_now()
                if not force and signature == self._signature:
                    return
                tokens = {p.name: p.read_bytes().strip() for p in self._entries()}
            except OSError as err:
                if force:
                    raise TokenStoreError(
                        f"security.tokens_dir: cannot read {self.directory}: {err}"
                    ) from err
                log.warning(
                    "cannot re-read the token directory %s (%s); keeping the last tokens", self.directory, err
                )
                return
            empty = sorted(name for name, value in tokens.items() if not value)
            if empty:
                log.warning("token files %s in %s are empty and accept nothing", empty, self.directory)
            self._digests = tuple(_digest(v) for v in tokens.values() if v)
            self._signature = signature
            names = sorted(name for name, value in tokens.items() if value)
            if not names:
                log.warning("no tokens in %s: every authenticated call is refused", self.directory)
            else:
                log.info("accepting %d bearer tokens from %s (files %s)", len(names), self.directory, names)


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value (scheme case-insensitive), else None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
