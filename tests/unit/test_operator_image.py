"""The lean operator distribution: what the operator image installs (docker/Dockerfile.operator).

The image's build stage copies docker/operator.pyproject.toml, operator/grok_operator/ and a list
of contract modules of grok_worker, then installs that distribution. Here the same build context
is assembled from the Dockerfile's own COPY lines and built into a wheel with pip (no image
engine needed; ~10 s), and the tests check the wheel: the operator and the contract only, the
`grok-operator` console script only, dependencies without JAX, gRPC or numpy; and, run from that
context alone, every operator module imports without loading JAX, gRPC or numpy and the contract
modules are exactly the grok_worker modules the operator needs. (Building the image itself with
buildah: devcluster/images.py; its size is in docs/chart.md.)
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from test_dockerfiles import DOCKERFILES, parse

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("jax", "jaxlib", "grpc", "grpcio", "numpy", "sentencepiece", "protobuf")

pytestmark = pytest.mark.slow


def build_context(root: Path) -> Path:
    """The operator image's build context as its build stage sees it (its COPY lines)."""
    build = next(stage for stage in parse(DOCKERFILES["operator"]).stages if stage.name == "build")
    for instr in build.all("COPY"):
        words = [w for w in shlex.split(instr.args) if not w.startswith("--")]
        *sources, target = words
        for source in sources:
            src = REPO / source
            dest = (
                root / target if len(sources) == 1 and not target.endswith("/") else root / target / src.name
            )
            if target.endswith("/") and src.is_dir():
                dest = root / target
            if src.is_dir():
                shutil.copytree(src, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)
    return root


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_context(tmp_path_factory.mktemp("operator-image"))


@pytest.fixture(scope="module")
def wheel(context: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(context),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    (found,) = out.glob("*.whl")
    return found


def test_the_wheel_holds_the_operator_and_the_contract_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    worker = sorted(n for n in names if n.startswith("grok_worker/"))
    assert worker == [
        "grok_worker/__init__.py",
        "grok_worker/contract.py",
        "grok_worker/contract_version.py",
        "grok_worker/model_config.py",
        "grok_worker/shard_plan.py",
    ]
    packages = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert packages == {"grok_operator", "grok_worker"}
    assert "grok_operator/py.typed" in names


def test_the_wheel_has_only_the_operator_script_and_no_heavy_dependency(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    info = next(n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt"))
    scripts = [line.split("=")[0].strip() for line in archive.read(info).decode().splitlines() if "=" in line]
    assert scripts == ["grok-operator"]
    meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    requires = Parser().parsestr(archive.read(meta).decode()).get_all("Requires-Dist") or []
    names = {r.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip().lower() for r in requires}
    # annotated-types: the constraint markers of the shared ModelDims (pydantic depends on it too);
    # aiohttp and prometheus-client: the /metrics and /readyz port (http_port.py)
    expected = {"kopf", "kubernetes", "pydantic", "annotated-types", "pyyaml", "aiohttp", "prometheus-client"}
    assert names == expected
    assert not names & set(HEAVY)


def test_every_operator_module_imports_from_the_image_context_without_heavy_modules(context: Path) -> None:
    """Imports every module of grok_operator with only the image's files importable for the project;
    the grok_worker modules loaded must be exactly those the image copies."""
    script = (
        "import importlib, pkgutil, sys, grok_operator\n"
        "assert grok_operator.__file__.startswith(sys.argv[1]), grok_operator.__file__\n"
        "for m in pkgutil.walk_packages(grok_operator.__path__, 'grok_operator.'):\n"
        "    if not m.name.endswith('__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "import grok_worker.contract_version\n"
        f"heavy = sorted(set(sys.modules) & set({list(HEAVY)!r}))\n"
        "assert not heavy, heavy\n"
        "import grok_worker\n"
        "assert grok_worker.__file__.startswith(sys.argv[1]), grok_worker.__file__\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('grok_worker.'))))\n"
    )
    env = {"PYTHONPATH": f"{context / 'operator'}:{context / 'worker'}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", script, str(context)], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    copied = {p.stem for p in (context / "worker" / "grok_worker").glob("*.py")} - {"__init__"}
    assert set(result.stdout.split()) == {f"grok_worker.{m}" for m in copied}
