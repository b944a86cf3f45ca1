"""A checkpoint's manifest: every file's size and sha256, written beside `ckpt-0/`, and its checks.

Data flow: `write_manifest(root)` hashes `root/ckpt-0/*` (threads; hashlib releases the GIL) ->
`root/MANIFEST_NAME` (JSON: {"format", "files": {name: {"size", "sha256"}}}).
`verify(root)` re-hashes and returns one `Mismatch` per file that differs (size, digest, missing,
unlisted). `check_files(ckpt_dir, names, digests)` is what the loader runs before parsing: sizes
against the manifest when there is one (always), digests too when asked (`verify: true`), raising
`CheckpointFormatError` that names every mismatching file.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from grok_worker.checkpoint.errors import CheckpointFormatError

MANIFEST_NAME = "checkpoint-manifest.json"
FORMAT = "grok-checkpoint-manifest/1"
_CHUNK = 8 << 20

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Entry:
    size: int
    sha256: str


@dataclass(frozen=True)
class Mismatch:
    name: str
    problem: str

    def __str__(self) -> str:
        return f"{self.name}: {self.problem}"


def _root_and_dir(path: Path) -> tuple[Path, Path]:
    """(folder holding the manifest, ckpt-0 folder) for either of the two."""
    if (path / "ckpt-0").is_dir():
        return path, path / "ckpt-0"
    return path.parent, path


def _tensor_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.name.startswith("tensor"))


class _Counter:
    def __init__(self, total: int, progress: Progress | None) -> None:
        self.done, self.total, self.progress = 0, total, progress
        self.lock = threading.Lock()

    def add(self, n: int) -> None:
        with self.lock:
            self.done += n
            if self.progress is not None:
                self.progress(self.done, self.total)


def _sha256(path: Path, counter: _Counter) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(_CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
            counter.add(n)
    return h.hexdigest()


def _digests(files: Sequence[Path], progress: Progress | None, workers: int | None) -> list[str]:
    counter = _Counter(sum(f.stat().st_size for f in files), progress)
    with ThreadPoolExecutor(max_workers=workers or min(4, os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda f: _sha256(f, counter), files))


def write_manifest(path: Path, progress: Progress | None = None, workers: int | None = None) -> Path:
    """Hash every tensor file under ckpt-0/ and write the manifest beside ckpt-0/."""
    root, directory = _root_and_dir(path)
    files = _tensor_files(directory)
    if not files:
        raise CheckpointFormatError(f"{directory}: no tensor files to put in a manifest")
    digests = _digests(files, progress, workers)
    entries = {f.name: {"size": f.stat().st_size, "sha256": d} for f, d in zip(files, digests, strict=True)}
    out = root / MANIFEST_NAME
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps({"format": FORMAT, "files": entries}, indent=1, sort_keys=True) + "\n")
    tmp.replace(out)
    return out


def read_manifest(path: Path) -> dict[str, Entry] | None:
    """The manifest beside this checkpoint (ckpt-0 or its parent), None when there is none."""
    root, _ = _root_and_dir(path)
    file = root / MANIFEST_NAME
    if not file.exists():
        return None
    try:
        data = json.loads(file.read_text())
        if data.get("format") != FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
        return {str(n): Entry(int(e["size"]), str(e["sha256"])) for n, e in data["files"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointFormatError(
            f"{file}: not a readable checkpoint manifest ({e}); rewrite it with `grok-worker checkpoint "
            "manifest DIR`"
        ) from None


def _compare(
    directory: Path, entries: dict[str, Entry], names: Sequence[str], digests: list[str] | None
) -> list[Mismatch]:
    problems = []
    for i, name in enumerate(names):
        want, file = entries.get(name), directory / name
        if want is None:
            problems.append(Mismatch(name, "not listed in the manifest"))
        elif not file.exists():
            problems.append(Mismatch(name, "missing"))
        elif (size := file.stat().st_size) != want.size:
            problems.append(Mismatch(name, f"size {size} bytes, manifest says {want.size}"))
        elif digests is not None and digests[i] != want.sha256:
            problems.append(Mismatch(name, f"sha256 {digests[i][:16]}…, manifest says {want.sha256[:16]}…"))
    return problems


def verify(
    path: Path, digests: bool = True, progress: Progress | None = None, workers: int | None = None
) -> list[Mismatch]:
    """Every file of the manifest and every tensor file on disk checked; the mismatches."""
    _, directory = _root_and_dir(path)
    entries = read_manifest(path)
    if entries is None:
        raise CheckpointFormatError(
            f"{path}: no {MANIFEST_NAME}; write one with `grok-worker checkpoint manifest {path}`"
        )
    names = sorted(set(entries) | {f.name for f in _tensor_files(directory)})
    sized = _compare(directory, entries, names, None)
    if sized or not digests:
        return sized
    return _compare(directory, entries, names, _digests([directory / n for n in names], progress, workers))


def check_files(directory: Path, names: Sequence[str], digests: bool, progress: Progress | None) -> int:
    """The loader's check before parsing; returns the files' total size. Sizes are compared with the
    manifest whenever there is one; digests only when asked (and then a manifest is required)."""
    entries = read_manifest(directory)
    if entries is None:
        if digests:
            raise CheckpointFormatError(
                f"{directory}: model.checkpoint.verify is true but there is no {MANIFEST_NAME} beside "
                f"ckpt-0/; write one with `grok-worker checkpoint manifest DIR` or set verify: false"
            )
        return sum((directory / n).stat().st_size for n in names)
    problems = _compare(directory, entries, names, None)
    if not problems and digests:
        problems = _compare(
            directory, entries, names, _digests([directory / n for n in names], progress, None)
        )
    if problems:
        listed = "; ".join(map(str, problems[:5])) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        raise CheckpointFormatError(
            f"{directory}: {len(problems)} file(s) differ from {MANIFEST_NAME}: {listed}. The copy is "
            "incomplete or damaged: copy those files again"
        )
    return sum(entries[n].size for n in names)
