"""The record of a started cluster, kept on disk so another command can find and stop it.

`grok-devcluster up` writes `run/<name>/state.json` (paths.py) as each process starts;
`status`, `kubeconfig` and `down` read it back. Writes go through a temporary file and a rename,
so a reader never sees half a record.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .layout import Ports
from .paths import run_state_dir
from .process import ProcessRecord
from .realnode import RealNodeState


@dataclass
class RunState:
    """Everything needed to use or tear down one cluster."""

    name: str
    root: str
    server: str
    kubeconfig: str
    kubectl: str
    helm: str
    ports: Ports
    processes: list[ProcessRecord] = field(default_factory=list)
    startup_s: float | None = None
    # Seconds from the start of start-up to each readiness milestone, in order.
    milestones: dict[str, float] = field(default_factory=dict)
    # The Python process that started the cluster; while it lives the record is not stale.
    owner: ProcessRecord | None = None
    # Set when the cluster has a real node (realnode.py): what `down` stops and restores.
    real_node: RealNodeState | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> RunState:
        data: dict[str, Any] = json.loads(text)
        data["ports"] = Ports(**data["ports"])
        data["processes"] = [ProcessRecord(**record) for record in data["processes"]]
        if data.get("owner") is not None:
            data["owner"] = ProcessRecord(**data["owner"])
        if data.get("real_node") is not None:
            data["real_node"] = RealNodeState(**data["real_node"])
        return cls(**data)


def state_file(name: str) -> Path:
    return run_state_dir(name) / "state.json"


def save_state(state: RunState) -> None:
    path = state_file(state.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".state.json.{os.getpid()}")
    partial.write_text(state.to_json(), encoding="utf-8")
    os.replace(partial, path)


def load_state(name: str) -> RunState | None:
    """The recorded state of cluster `name`, or None when nothing (readable) is recorded."""
    try:
        return RunState.from_json(state_file(name).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError) as err:
        raise RuntimeError(
            f"the state file {state_file(name)} is unreadable ({err}); stop any leftover processes "
            f"listed in it by hand, then delete {run_state_dir(name)}"
        ) from err


def forget_state(name: str) -> None:
    shutil.rmtree(run_state_dir(name), ignore_errors=True)
