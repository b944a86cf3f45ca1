"""Generate the Python modules of the `grok.v1` protos: the one pinned way to produce them.

Data flow: every `grok/v1/*.proto` under this folder -> grpc_tools' bundled protoc (pinned to
`PINNED_GRPCIO_TOOLS`) -> `*_pb2.py`, `*_pb2.pyi` and `*_pb2_grpc.py` written next to the sources,
so the generated code imports as `grok.v1.<name>_pb2`. The outputs are committed; the unit test
`tests/unit/test_protos.py` regenerates into a temporary folder and fails if they drift.

Usage: `python protos/generate.py [--out DIR]` (`make protos`).
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path

#: The generator version the committed stubs were produced with (pyproject pins grpcio-tools too).
PINNED_GRPCIO_TOOLS = "1.85.1"

PROTO_ROOT = Path(__file__).resolve().parent
PROTO_PACKAGE = Path("grok") / "v1"


def proto_sources(root: Path = PROTO_ROOT) -> list[Path]:
    """The .proto files, relative to `root`, in a stable order."""
    return sorted(p.relative_to(root) for p in (root / PROTO_PACKAGE).glob("*.proto"))


def check_generator_version() -> None:
    installed = metadata.version("grpcio-tools")
    if installed != PINNED_GRPCIO_TOOLS:
        raise SystemExit(
            f"grpcio-tools {installed} is installed but the stubs are pinned to {PINNED_GRPCIO_TOOLS}: "
            f"run `pip install grpcio-tools=={PINNED_GRPCIO_TOOLS}` (or bump PINNED_GRPCIO_TOOLS in "
            "protos/generate.py and regenerate)"
        )


def generate(out_dir: Path = PROTO_ROOT) -> list[Path]:
    """Run protoc on every source into `out_dir`; return the generated files."""
    check_generator_version()
    from grpc_tools import protoc  # type: ignore[import-untyped]  # only the generator needs grpcio-tools

    include = Path(protoc.__file__).resolve().parent / "_proto"
    sources = proto_sources()
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(s) for s in sources),
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code} on {[str(s) for s in sources]}")
    return sorted(p for p in (out_dir / PROTO_PACKAGE).iterdir() if "_pb2" in p.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--out", type=Path, default=PROTO_ROOT, help="output root (default: next to the sources)"
    )
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
