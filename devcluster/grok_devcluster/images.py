"""Build the project's container images here, without a registry or a Docker daemon.

Data flow: versions.toml's [base-image] -> `debootstrap` writes a minimal Debian root filesystem
with Debian's Python -> `umoci` packs it as an OCI image -> an OCI archive, the base both
Dockerfiles take through their PYTHON_IMAGE build argument. Then `buildah bud --layers` builds
docker/Dockerfile.operator and docker/Dockerfile.worker themselves (the repository root as build
context, filtered by .dockerignore) and `buildah push` writes each image as an OCI archive that
the node's containerd imports (realnode.py).

Every artefact is cached under ~/.cache/grok-operator/images/, named by a hash of its inputs: the
base by its debootstrap settings; an image by that base hash, its Dockerfile and every file of the
build context. The image's tag is the first 12 hex digits of that hash, so a code change makes a
new tag (and a rolling update), and an unchanged tree is never rebuilt. buildah keeps its layer
cache there too, so a code change rebuilds only the source layers.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .paths import cache_root
from .versions import BaseImage, load_base_image

REPO = Path(__file__).resolve().parents[2]
#: The name prefix local images carry; pods use them with imagePullPolicy: Never.
LOCAL_REGISTRY = "registry.local"
#: The host's CA bundle, mounted over the image's own while `RUN pip install` fetches from PyPI
#: (a proxy in between may re-sign TLS with a CA only the host trusts).
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
# Trimmed from the debootstrap tree: documentation, manuals, locales and apt's caches.
_TRIM = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/cache/apt",
    "var/lib/apt/lists",
)


class ImageError(RuntimeError):
    """An image could not be built; the message names the step and shows the end of its output."""


@dataclass(frozen=True)
class ImageSpec:
    """One of the project's images: its short name and the Dockerfile that builds it."""

    name: str
    dockerfile: Path

    def ref(self, tag: str) -> str:
        return f"{LOCAL_REGISTRY}/{self.name}:{tag}"


IMAGES = {
    "grok-operator": ImageSpec("grok-operator", REPO / "docker" / "Dockerfile.operator"),
    "grok-worker": ImageSpec("grok-worker", REPO / "docker" / "Dockerfile.worker"),
}


@dataclass(frozen=True)
class BuiltImage:
    """An image ready to import: its reference (name:tag), OCI archive, and how it was obtained."""

    name: str
    ref: str
    tag: str
    archive: Path
    seconds: float
    cached: bool

    @property
    def size_mb(self) -> float:
        return self.archive.stat().st_size / 1e6


def images_dir() -> Path:
    return cache_root() / "images"


def _buildah_dirs() -> tuple[Path, Path]:
    return images_dir() / "buildah" / "root", images_dir() / "buildah" / "runroot"


def _digest(parts: Sequence[bytes]) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(len(part).to_bytes(8, "big"))
        hasher.update(part)
    return hasher.hexdigest()


def base_key(base: BaseImage) -> str:
    return _digest([base.suite.encode(), base.mirror.encode(), ",".join(sorted(base.include)).encode()])


def context_files(repo: Path = REPO) -> Iterator[Path]:
    """Files of the build context: the paths .dockerignore re-admits (`!path`), minus its excludes."""
    rules = [line.strip() for line in (repo / ".dockerignore").read_text().splitlines()]
    rules = [rule for rule in rules if rule and not rule.startswith("#")]
    admitted = [rule[1:].rstrip("/") for rule in rules if rule.startswith("!")]
    excluded = [rule.removeprefix("**/") for rule in rules if not rule.startswith("!") and rule != "**"]
    for top in sorted(admitted):
        root = repo / top
        candidates = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in candidates:
            parts = path.relative_to(repo).parts
            if not any(fnmatch.fnmatch(part, pattern) for part in parts for pattern in excluded):
                yield path


def image_key(spec: ImageSpec, base_hash: str, repo: Path = REPO) -> str:
    """Hash of everything that goes into the image: base, Dockerfile, each context file's path and bytes."""
    parts = [base_hash.encode(), spec.dockerfile.read_bytes()]
    for path in context_files(repo):
        parts += [str(path.relative_to(repo)).encode(), path.read_bytes()]
    return _digest(parts)


def _run(argv: Sequence[str], what: str, log: Path, cwd: Path | None = None) -> None:
    with log.open("ab") as sink:
        sink.write(f"$ {' '.join(argv)}\n".encode())
        sink.flush()
        result = subprocess.run(list(argv), stdout=sink, stderr=subprocess.STDOUT, cwd=cwd, check=False)
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise ImageError(f"{what} failed (exit {result.returncode}); last lines of {log}:\n{tail}")


def _require_tools(*tools: str) -> None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise ImageError(
            f"{', '.join(missing)} not found on PATH; install the real node's Debian packages with "
            "`grok-devcluster setup-node` (as root)"
        )


def ensure_base_image(progress: TextIO = sys.stderr) -> tuple[Path, str]:
    """The base image's OCI archive (debootstrap + umoci), built once per [base-image] setting."""
    base = load_base_image()
    key = base_key(base)
    archive = images_dir() / f"base-{key[:16]}.oci.tar"
    if archive.is_file():
        return archive, key
    _require_tools("debootstrap", "umoci", "tar")
    archive.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    print(
        f"building the base image: debootstrap {base.suite} with {', '.join(base.include)} ...",
        file=progress,
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="grok-base-", dir=images_dir()) as tmp:
        work = Path(tmp)
        log = images_dir() / "base-build.log"
        rootfs = work / "bundle" / "rootfs"
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(base.include)}",
                base.suite,
                str(rootfs),
                base.mirror,
            ],
            "debootstrap",
            log,
        )
        for trimmed in _TRIM:
            shutil.rmtree(rootfs / trimmed, ignore_errors=True)
        layout = work / "layout"
        _run(["umoci", "init", "--layout", str(layout)], "umoci init", log)
        _run(["umoci", "new", "--image", f"{layout}:base"], "umoci new", log)
        _run(["umoci", "insert", "--image", f"{layout}:base", str(rootfs), "/"], "umoci insert", log)
        _run(
            [
                "umoci",
                "config",
                "--image",
                f"{layout}:base",
                "--config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--config.cmd=python3",
            ],
            "umoci config",
            log,
        )
        _run(["umoci", "gc", "--layout", str(layout)], "umoci gc", log)
        partial = archive.with_name(f".{archive.name}.partial")
        _run(["tar", "-C", str(layout), "-cf", str(partial), "."], "packing the base image", log)
        os.replace(partial, archive)
    print(
        f"built the base image in {time.monotonic() - started:.0f}s ({archive.stat().st_size / 1e6:.0f} MB) -> {archive}",
        file=progress,
        flush=True,
    )
    return archive, key


PAUSE_SOURCE = Path(__file__).resolve().parent / "pause" / "pause.c"


def ensure_pause_image(ref: str, progress: TextIO = sys.stderr) -> Path:
    """The sandbox image every pod starts with: our pause.c, compiled static, alone in one layer."""
    key = _digest([PAUSE_SOURCE.read_bytes(), ref.encode()])
    archive = images_dir() / f"pause-{key[:12]}.oci.tar"
    if archive.is_file():
        return archive
    _require_tools("gcc", "umoci", "tar")
    archive.parent.mkdir(parents=True, exist_ok=True)
    log = images_dir() / "pause-build.log"
    with tempfile.TemporaryDirectory(prefix="grok-pause-", dir=images_dir()) as tmp:
        work = Path(tmp)
        (work / "rootfs").mkdir()
        _run(
            ["gcc", "-Os", "-static", "-o", str(work / "rootfs" / "pause"), str(PAUSE_SOURCE)],
            "compiling pause.c",
            log,
        )
        layout = f"{work / 'layout'}:{ref.rsplit(':', 1)[1]}"
        _run(["umoci", "init", "--layout", str(work / "layout")], "umoci init", log)
        _run(["umoci", "new", "--image", layout], "umoci new", log)
        _run(
            ["umoci", "insert", "--image", layout, str(work / "rootfs" / "pause"), "/pause"],
            "umoci insert",
            log,
        )
        _run(
            ["umoci", "config", "--image", layout, "--config.entrypoint=/pause", "--config.user=65535:65535"],
            "umoci config",
            log,
        )
        _run(["umoci", "gc", "--layout", str(work / "layout")], "umoci gc", log)
        partial = archive.with_name(f".{archive.name}.partial")
        _run(["tar", "-C", str(work / "layout"), "-cf", str(partial), "."], "packing the pause image", log)
        os.replace(partial, archive)
    print(f"built the pause image -> {archive}", file=progress, flush=True)
    return archive


def buildah_argv(*args: str) -> list[str]:
    """buildah with its storage under the cache, so the machine's /var/lib/containers stays unused."""
    root, runroot = _buildah_dirs()
    return ["buildah", f"--root={root}", f"--runroot={runroot}", *args]


#: Host paths buildah 1.28 creates whatever --root says (a CNI lock, a blob-info cache).
_BUILDAH_HOST_PATHS = (Path("/etc/cni"), Path("/var/lib/containers"))


def build_image(spec: ImageSpec, progress: TextIO = sys.stderr) -> BuiltImage:
    """The image's OCI archive, built with buildah unless the cache already has this exact input.

    Host paths buildah creates outside its --root are removed again afterwards.
    """
    created = [path for path in _BUILDAH_HOST_PATHS if not path.exists()]
    try:
        return _build_image(spec, progress)
    finally:
        for path in created:
            shutil.rmtree(path, ignore_errors=True)


def _build_image(spec: ImageSpec, progress: TextIO) -> BuiltImage:
    base_archive, base_hash = ensure_base_image(progress)
    key = image_key(spec, base_hash)
    tag = key[:12]
    archive = images_dir() / f"{spec.name}-{tag}.oci.tar"
    if archive.is_file():
        return BuiltImage(spec.name, spec.ref(tag), tag, archive, 0.0, cached=True)
    _require_tools("buildah")
    started = time.monotonic()
    print(f"building {spec.ref(tag)} from {spec.dockerfile.relative_to(REPO)} ...", file=progress, flush=True)
    log = images_dir() / f"{spec.name}-build.log"
    log.write_text("")
    mounts = [f"--volume={HOST_CA}:{HOST_CA}:ro"] if HOST_CA.is_file() else []
    _run(
        buildah_argv(
            "bud",
            "--layers",
            "--network=host",
            f"--build-arg=PYTHON_IMAGE=oci-archive:{base_archive}",
            *mounts,
            f"--file={spec.dockerfile}",
            f"--tag={spec.ref(tag)}",
            str(REPO),
        ),
        f"buildah bud {spec.dockerfile.name}",
        log,
    )
    partial = archive.with_name(f".{archive.name}.partial")
    partial.unlink(missing_ok=True)
    _run(
        buildah_argv("push", spec.ref(tag), f"oci-archive:{partial}:{spec.ref(tag)}"),
        f"buildah push {spec.ref(tag)}",
        log,
    )
    os.replace(partial, archive)
    _prune_archives(spec, keep=archive)
    seconds = time.monotonic() - started
    built = BuiltImage(spec.name, spec.ref(tag), tag, archive, seconds, cached=False)
    print(f"built {built.ref} in {seconds:.0f}s ({built.size_mb:.0f} MB archive)", file=progress, flush=True)
    return built


#: Archives of earlier builds of one image kept besides the newest (for a rollback in a test).
_KEEP_ARCHIVES = 1


def _prune_archives(spec: ImageSpec, keep: Path) -> None:
    """Delete all but the newest few archives of an image, and those builds' images in buildah's
    storage (each holds its own ~800 MB copy of the worker's virtualenv); the layer cache stays."""
    others = sorted(
        (p for p in images_dir().glob(f"{spec.name}-*.oci.tar") if p != keep),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    kept_tags = {keep.name.removeprefix(f"{spec.name}-").removesuffix(".oci.tar")}
    kept_tags |= {
        p.name.removeprefix(f"{spec.name}-").removesuffix(".oci.tar") for p in others[:_KEEP_ARCHIVES]
    }
    for old in others[_KEEP_ARCHIVES:]:
        old.unlink(missing_ok=True)
    listed = subprocess.run(
        buildah_argv("images", "--noheading", "--format", "{{.Name}}:{{.Tag}}"),
        capture_output=True,
        text=True,
        check=False,
    )
    prefix = f"{LOCAL_REGISTRY}/{spec.name}:"
    tags = {ref.removeprefix(prefix) for ref in listed.stdout.split() if ref.startswith(prefix)}
    for tag in sorted(tags - kept_tags):
        subprocess.run(buildah_argv("rmi", spec.ref(tag)), capture_output=True, check=False)


def build_images(
    names: Sequence[str] = tuple(IMAGES), progress: TextIO = sys.stderr
) -> dict[str, BuiltImage]:
    """Build (or find cached) each named image; a clear error for an unknown name."""
    unknown = sorted(set(names) - set(IMAGES))
    if unknown:
        raise ImageError(f"unknown image(s) {unknown}; known: {sorted(IMAGES)}")
    return {name: build_image(IMAGES[name], progress) for name in names}
