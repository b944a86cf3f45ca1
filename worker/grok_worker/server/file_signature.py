"""What a poll compares to notice that mounted files changed.

Data flow: paths -> `file_signature` -> one (name, inode, size, mtime) entry per file, after
symlinks. Kubelet updates a mounted Secret by writing a new timestamped directory and swapping the
`..data` symlink that every key's symlink goes through, so each file then reads as a new inode; a
file rewritten in place changes its size or mtime. Used by the token store (tokens.py) and the
serving certificate (cert_reload.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

Signature = tuple[tuple[str, int, int, int], ...]


def file_signature(paths: Iterable[Path]) -> Signature:
    """The files' identity now; raises OSError when one cannot be stat'ed."""
    entries = []
    for path in paths:
        st = path.stat()
        entries.append((path.name, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(entries)
