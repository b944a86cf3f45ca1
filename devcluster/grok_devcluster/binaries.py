"""Find or build every control-plane binary, in a fixed resolution order.

For each binary name: (1) `$KUBEBUILDER_ASSETS/<name>` (the envtest convention: a folder of
downloaded binaries; used as is, whatever its version), (2) the per-user cache keyed by the
version pinned in versions.toml (paths.binary_cache_path), (3) a build from the Go modules
(build.py) into that cache. `ensure_binaries()` returns where each one ended up and why.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from .build import BuildError, build_group
from .paths import binary_cache_path
from .versions import GoModuleGroup, group_of, load_groups

ALL_BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "helm",
)
#: Built and started only on request (`grok-devcluster up --kueue`, the `kueue` test fixture).
ON_REQUEST_BINARIES = ("kueue",)

Source = Literal["KUBEBUILDER_ASSETS", "cache", "built"]


@dataclass(frozen=True)
class ResolvedBinary:
    """One binary ready to run: its pinned version, its path and where it came from."""

    name: str
    version: str
    path: Path
    source: Source


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def locate_binary(name: str, groups: dict[str, GoModuleGroup] | None = None) -> ResolvedBinary | None:
    """The binary from $KUBEBUILDER_ASSETS or the cache, or None when it would need a build."""
    groups = groups if groups is not None else load_groups()
    version = group_of(name, groups).version
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        candidate = Path(assets) / name
        if _executable(candidate):
            return ResolvedBinary(name, version, candidate, "KUBEBUILDER_ASSETS")
    cached = binary_cache_path(name, version)
    if _executable(cached):
        return ResolvedBinary(name, version, cached, "cache")
    return None


def ensure_binaries(
    names: Iterable[str] = ALL_BINARIES,
    *,
    allow_build: bool = True,
    progress: TextIO = sys.stderr,
) -> dict[str, ResolvedBinary]:
    """Resolve each binary in `names`, building the missing ones (one group at a time) if allowed."""
    groups = load_groups()
    wanted = list(dict.fromkeys(names))
    resolved: dict[str, ResolvedBinary] = {}
    missing: dict[str, list[str]] = {}
    for name in wanted:
        found = locate_binary(name, groups)
        if found is not None:
            resolved[name] = found
        else:
            missing.setdefault(group_of(name, groups).name, []).append(name)
    if missing and not allow_build:
        names_missing = sorted(n for group in missing.values() for n in group)
        raise BuildError(
            f"control-plane binaries {names_missing} are neither in $KUBEBUILDER_ASSETS nor in the cache; "
            "run `grok-devcluster binaries` to build them (needs Go and the Go module proxy; about 10 minutes cold on 2 cores, see docs/controlplane.md)."
        )
    for group_name, group_binaries in missing.items():
        group = groups[group_name]
        destinations = {name: binary_cache_path(name, group.version) for name in group_binaries}
        build_group(group, group_binaries, destinations, progress=progress)
        for name in group_binaries:
            resolved[name] = ResolvedBinary(name, group.version, destinations[name], "built")
    return {name: resolved[name] for name in wanted}
