"""Packaging guards: the operator folder must not shadow the standard library, and the operator stays
free of JAX (the import-linter contract checks imports statically; this checks what really loads)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_python(code: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_standard_library_operator_module_is_not_shadowed_from_the_repo_root() -> None:
    out = run_python(
        "import operator, json; print(json.dumps([operator.__file__ or '', operator.itemgetter(1)([0, 7])]))",
        cwd=REPO,
    )
    origin, value = json.loads(out)
    assert value == 7
    assert not origin.startswith(str(REPO)), f"`operator` resolved to the project folder: {origin}"


def test_operator_package_imports_under_its_own_name() -> None:
    out = run_python("import grok_operator, operator; print(grok_operator.__file__)", cwd=REPO)
    assert out.endswith("operator/grok_operator/__init__.py")


def test_no_folder_named_operator_is_a_regular_package() -> None:
    assert not (REPO / "operator" / "__init__.py").exists()


def test_contract_imports_without_jax_numpy_or_grpc() -> None:
    out = run_python(
        "import sys, grok_worker.contract; "
        "print(sorted(m for m in ('jax', 'numpy', 'grpc') if m in sys.modules))",
        cwd=REPO,
    )
    assert out == "[]"
