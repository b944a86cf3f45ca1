"""`grok-worker make-checkpoint`: a random-weight release-format checkpoint for a preset and seed.

Used by tests, the demo and benchmarks: `grok-worker make-checkpoint --preset tiny --seed 0 DIR`
writes DIR/ckpt-0/tensor*_000 that the release's loader (and ours) accepts.
"""

from __future__ import annotations

import argparse
import sys

from grok_worker.model_config import PRESETS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="where to write; the files go under DIRECTORY/ckpt-0/")
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS), help="model dimensions")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same weights)")
    parser.add_argument("--quantization", default="int8", choices=["int8", "bf16"], help="weight storage")


def run(args: argparse.Namespace) -> int:
    from grok_worker.checkpoint.writer import write_random_checkpoint

    cfg = PRESETS[args.preset]
    directory = write_random_checkpoint(cfg, args.directory, args.seed, args.quantization)
    size = sum(p.stat().st_size for p in directory.iterdir())
    print(
        f"wrote {cfg.name} ({args.quantization}, seed {args.seed}) to {directory}: {size / 2**20:.1f} MiB",
        file=sys.stderr,
    )
    return 0
