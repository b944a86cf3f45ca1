"""Options every benchmark receives, parsed once by `bench.__main__`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Size = Literal["smoke", "full"]


def default_workdir() -> Path:
    """Where generated checkpoints are cached between runs (they take a while to write)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "grok-operator" / "bench"


@dataclass(frozen=True)
class Options:
    #: "full" measures at the size the issue names; "smoke" runs the same code at a tiny size so a
    #: test can check that the benchmark works (its numbers mean nothing).
    size: Size = "full"
    #: Cache for generated checkpoints and other inputs.
    workdir: Path = field(default_factory=default_workdir)
    #: Multiplies repeat counts (e.g. 0.5 halves them); never below one repeat.
    repeat_scale: float = 1.0

    @property
    def smoke(self) -> bool:
        return self.size == "smoke"

    def repeats(self, full: int, smoke: int = 2) -> int:
        n = smoke if self.smoke else full
        return max(1, round(n * self.repeat_scale))
