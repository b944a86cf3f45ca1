"""`grok-worker`: the worker's command line.

Subcommands dispatch to the module that owns them, imported lazily so `--help` stays fast:
- `serve`: run the gRPC generation server (what a worker pod runs), `grok_worker.server.main`.
- `make-checkpoint`: write a random-weight release-format checkpoint, `grok_worker.checkpoint.make`.
- `checkpoint manifest|verify DIR`: a checkpoint's size + sha256 manifest, `grok_worker.checkpoint.command`.
- `plan`: check a topology ahead of time with the compiler, `grok_worker.plan_cli`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: subcommand -> (module with `add_arguments(parser)` and `run(args) -> int`, help text)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("grok_worker.server.main", "serve the gRPC generation API (what a worker pod runs)"),
    "make-checkpoint": (
        "grok_worker.checkpoint.make",
        "write a random-weight checkpoint in the Grok-1 release format",
    ),
    "checkpoint": (
        "grok_worker.checkpoint.command",
        "write (manifest) or check (verify) a checkpoint's manifest of file sizes and sha256 digests",
    ),
    "plan": (
        "grok_worker.plan_cli",
        "compile prefill and decode for a topology on fake devices: memory per device, collectives, fits?",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="grok-worker", description="Grok-1 serving worker")
    sub = parser.add_subparsers(dest="command", required=True)
    wanted = (list(argv) if argv is not None else sys.argv[1:])[:1]
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        if wanted == [name]:
            importlib.import_module(module_name).add_arguments(p)
    args = parser.parse_args(argv)
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    result: int = module.run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
