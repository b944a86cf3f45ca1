"""Figures and how they are printed: a human table first, then one JSON line per figure.

A benchmark returns a `Result`: its `Figure`s (value, the baseline measured in the same run, the
goal) and free-form `notes` (context rows such as the load used or the phase split). `emit` writes
the table and, last, the machine-readable lines

    {"bench": NAME, "figure": NAME, "value": V, "unit": U, "baseline": B, "ratio": V/B, "goal": G}

`goal` is a string such as ">=0.6", "<=1.05" or "==0", applied to `ratio` when there is a baseline and
else to `value`; a "value" prefix ("value<=1") applies it to `value` even beside a baseline. It is
null for figures reported without a goal.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO

_GOAL = re.compile(r"^(value\s*)?(>=|<=|==|~=)\s*(-?[0-9.]+(?:e-?[0-9]+)?)$")


@dataclass(frozen=True)
class Figure:
    """One measured figure. `baseline` is measured in the same run; `ratio` is value/baseline."""

    bench: str
    figure: str
    value: float
    unit: str
    baseline: float | None = None
    goal: str | None = None
    #: What limits this figure when its goal is not met (printed beside it and kept in the docs).
    limited_by: str = ""

    def __post_init__(self) -> None:
        if self.goal is not None and not _GOAL.match(self.goal):
            raise ValueError(
                f"Figure {self.figure!r}: goal {self.goal!r} must look like '>=0.6', '<=1.05' or 'value<=1'"
            )

    @property
    def ratio(self) -> float | None:
        if self.baseline is None:
            return None
        if self.baseline == 0:
            return math.inf if self.value else 0.0
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        """Whether the goal holds (None when the figure has no goal)."""
        if self.goal is None:
            return None
        match = _GOAL.match(self.goal)
        assert match is not None
        on_value, op, target = bool(match.group(1)), match.group(2), float(match.group(3))
        got = self.value if on_value or self.ratio is None else self.ratio
        if op == ">=":
            return got >= target
        if op == "<=":
            return got <= target
        if op == "==":
            return got == target
        return abs(got - target) <= 0.25 * abs(target)  # "~=": within 25 %

    def as_json(self) -> dict[str, object]:
        return {
            "bench": self.bench,
            "figure": self.figure,
            "value": _clean(self.value),
            "unit": self.unit,
            "baseline": _clean(self.baseline),
            "ratio": _clean(self.ratio),
            "goal": self.goal,
        }


@dataclass
class Result:
    """What one benchmark run produced."""

    bench: str
    figures: list[Figure] = field(default_factory=list)
    #: (label, text) rows of context shown under the table, e.g. ("load", "Poisson 4 req/s").
    notes: list[tuple[str, str]] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def note(self, label: str, text: str) -> None:
        self.notes.append((label, text))


def _clean(x: float | None) -> float | None:
    if x is None or not math.isfinite(x):
        return None  # JSON has no inf/nan
    return float(f"{x:.6g}")


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.3e}"
    return f"{x:.4g}"


def table(results: Sequence[Result]) -> str:
    """The human table: one row per figure, then each benchmark's notes."""
    header = ("bench", "figure", "value", "unit", "baseline", "ratio", "goal", "met")
    rows: list[tuple[str, ...]] = [header]
    for res in results:
        for f in res.figures:
            met = {None: "", True: "yes", False: "NO"}[f.met]
            rows.append(
                (f.bench, f.figure, _fmt(f.value), f.unit, _fmt(f.baseline), _fmt(f.ratio), f.goal or "", met)
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for res in results:
        for label, text in res.notes:
            lines.append(f"[{res.bench}] {label}: {text}")
        for f in res.figures:
            if f.met is False and f.limited_by:
                lines.append(f"[{res.bench}] {f.figure} misses {f.goal}: {f.limited_by}")
    return "\n".join(lines)


def json_lines(results: Sequence[Result]) -> list[str]:
    return [json.dumps(f.as_json()) for res in results for f in res.figures]


def emit(results: Sequence[Result], out: IO[str]) -> None:
    """Print the table, then (last) one JSON line per figure."""
    out.write(table(results) + "\n")
    for line in json_lines(results):
        out.write(line + "\n")
    out.flush()
