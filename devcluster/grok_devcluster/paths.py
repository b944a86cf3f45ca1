"""Where grok-devcluster keeps things outside the work tree.

Everything lives under one per-user cache root, `$XDG_CACHE_HOME/grok-operator` (default
`~/.cache/grok-operator`):
    bin/<name>-<version>/<name>   control-plane binaries, keyed by the version in versions.toml
    run/<cluster-name>/state.json pids, ports and the temporary run folder of a started cluster
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The per-user cache root; honours $XDG_CACHE_HOME."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "grok-operator"


def binary_cache_path(name: str, version: str) -> Path:
    """Where the cached build of binary `name` at `version` lives."""
    return cache_root() / "bin" / f"{name}-{version}" / name


def run_state_dir(cluster_name: str) -> Path:
    """Folder holding the state file of the cluster called `cluster_name`."""
    return cache_root() / "run" / cluster_name


def all_run_state_dirs() -> list[Path]:
    """State folders of every recorded cluster, sorted by name."""
    root = cache_root() / "run"
    if not root.is_dir():
        return []
    return sorted(path for path in root.iterdir() if path.is_dir())
