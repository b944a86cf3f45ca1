"""`grok-worker checkpoint manifest DIR` and `grok-worker checkpoint verify DIR`.

manifest: hashes every file under DIR/ckpt-0/ and writes DIR/checkpoint-manifest.json (size and
sha256 per file). verify: re-hashes and compares, naming each mismatching file; exit status 1 when
any differs. Both draw a progress bar on stderr (bytes hashed of all bytes).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TextIO

from grok_worker.checkpoint.errors import CheckpointFormatError


class ProgressBar:
    """A one-line bytes progress bar: redrawn in place on a terminal, every 10 % otherwise."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self.label, self.stream, self.width = label, stream or sys.stderr, width
        self.start = time.monotonic()
        self.last_tenth = -1

    def __call__(self, done: int, total: int) -> None:
        fraction = done / total if total else 1.0
        tty = self.stream.isatty()
        if not tty and int(fraction * 10) == self.last_tenth:
            return
        self.last_tenth = int(fraction * 10)
        filled = int(fraction * self.width)
        rate = done / max(time.monotonic() - self.start, 1e-9) / 2**20
        line = (
            f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {fraction:6.1%} "
            f"{done / 2**20:.1f}/{total / 2**20:.1f} MiB {rate:.0f} MiB/s"
        )
        self.stream.write(("\r" + line) if tty else (line + "\n"))
        if tty and done >= total:
            self.stream.write("\n")
        self.stream.flush()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["manifest", "verify"], help="write or check the manifest")
    parser.add_argument("directory", help="the folder holding ckpt-0/ (or ckpt-0/ itself)")
    parser.add_argument("--workers", type=int, default=None, help="files hashed at once (default 4)")


def run(args: argparse.Namespace) -> int:
    from grok_worker.checkpoint import manifest

    directory = Path(args.directory)
    try:
        if args.action == "manifest":
            out = manifest.write_manifest(directory, ProgressBar("hashing"), args.workers)
            print(f"wrote {out}", file=sys.stderr)
            return 0
        problems = manifest.verify(directory, True, ProgressBar("verifying"), args.workers)
    except CheckpointFormatError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for p in problems:
        print(f"MISMATCH {p}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} file(s) differ from the manifest: copy them again", file=sys.stderr)
        return 1
    print("all files match the manifest", file=sys.stderr)
    return 0
