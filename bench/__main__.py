"""`python -m bench quick | all | NAME...`: run benchmarks, print a table, then one JSON line per figure.

Exit status: 0 when every benchmark ran (whether or not its goals were met: benchmarks do not fail
on a slow machine), 1 when one of them broke (its traceback goes to stderr), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from bench.options import Options, default_workdir
from bench.registry import BENCHMARKS, NOT_IN_ALL, quick_set, runner
from bench.report import Result, emit, json_lines


def _parser() -> argparse.ArgumentParser:
    listing = "\n".join(
        f"  {n:<11} {'(quick) ' if e.quick else ''}{e.figures}" for n, e in BENCHMARKS.items()
    )
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="grok-operator benchmarks: each figure is a ratio against a limit measured in the same run.",
        epilog=f"benchmarks:\n{listing}\n  quick       the ones marked (quick)\n  all         every one but gpu, realdemo and fleet",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("names", nargs="+", help="quick, all, or benchmark names")
    p.add_argument(
        "--size",
        choices=("full", "smoke"),
        default="full",
        help="full: the sizes the figures are defined at; smoke: tiny sizes that only prove the code runs",
    )
    p.add_argument("--workdir", type=Path, default=default_workdir(), help="cache for generated checkpoints")
    p.add_argument("--repeat-scale", type=float, default=1.0, help="multiply repeat counts (default 1)")
    p.add_argument("--json-out", type=Path, help="also append the JSON lines to this file")
    return p


def expand(names: Sequence[str]) -> list[str]:
    chosen: list[str] = []
    for name in names:
        if name == "quick":
            picked = quick_set()
        elif name == "all":
            picked = [n for n in BENCHMARKS if n not in NOT_IN_ALL]
        elif name in BENCHMARKS:
            picked = [name]
        else:
            raise KeyError(name)
        chosen.extend(n for n in picked if n not in chosen)
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        names = expand(args.names)
    except KeyError as err:
        parser.error(f"unknown benchmark {err.args[0]!r}; choose from quick, all, {', '.join(BENCHMARKS)}")
    if args.repeat_scale <= 0:
        parser.error("--repeat-scale must be > 0")
    options = Options(size=args.size, workdir=args.workdir, repeat_scale=args.repeat_scale)
    results: list[Result] = []
    broken: list[str] = []
    for name in names:
        print(f"== {name} ({options.size}) ...", file=sys.stderr, flush=True)
        try:
            results.append(runner(name)(options))
        except Exception:
            traceback.print_exc()
            broken.append(name)
    emit(results, sys.stdout)
    if args.json_out is not None:
        with args.json_out.open("a") as f:
            f.writelines(line + "\n" for line in json_lines(results))
    if broken:
        print(f"benchmarks that broke: {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
