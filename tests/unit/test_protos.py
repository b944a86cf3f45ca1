"""The committed grok.v1 stubs are exactly what the pinned generator produces (no drift)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "protos" / "grok" / "v1"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("protos_generate", ROOT / "protos" / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_regenerated_stubs_match_the_committed_ones(tmp_path: Path) -> None:
    generated = _generator().generate(tmp_path)
    names = sorted(p.name for p in generated)
    assert names == ["generation_pb2.py", "generation_pb2.pyi", "generation_pb2_grpc.py"]
    for path in generated:
        committed = PROTO_DIR / path.name
        assert committed.exists(), f"{committed} missing: run `make protos`"
        assert committed.read_text() == path.read_text(), f"{committed} is stale: run `make protos`"


def test_every_message_has_a_next_id_comment_matching_its_fields() -> None:
    from grok.v1 import generation_pb2

    text = (PROTO_DIR / "generation.proto").read_text()
    assert re.search(r"^package grok\.v1;$", text, re.M)
    comments = dict(
        (name, int(n)) for n, name in re.findall(r"// Next ID: (\d+)\n(?://.*\n)*message (\w+)", text)
    )
    messages = generation_pb2.DESCRIPTOR.message_types_by_name
    assert set(comments) == set(messages), "every message needs a `// Next ID: N` comment"
    for name, descriptor in messages.items():
        used = [f.number for f in descriptor.fields]
        assert comments[name] == max(used, default=0) + 1, (
            f"message {name}: Next ID {comments[name]}, fields {used}"
        )


def test_generated_modules_import_as_grok_v1() -> None:
    from grok.v1 import generation_pb2, generation_pb2_grpc

    assert generation_pb2.DESCRIPTOR.package == "grok.v1"
    assert hasattr(generation_pb2_grpc, "GenerationServiceStub")
