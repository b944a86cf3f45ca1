"""Static checks of the container images (no engine builds them here).

Each Dockerfile in docker/ is parsed into stages and instructions; the tests check what a build would
otherwise reveal late: every file a COPY names exists in the build context and is not excluded by
.dockerignore, the base image is pinned, the final stage runs as a non-root user without compilers,
and the entrypoint is one of the project's own console scripts.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = {
    "operator": REPO / "docker" / "Dockerfile.operator",
    "worker": REPO / "docker" / "Dockerfile.worker",
}
EXPECTED_ENTRYPOINT = {"operator": "grok-operator", "worker": "grok-worker"}
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "clang", "cmake", "git")


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def resolve(self, text: str) -> str:
        """Substitute ${ARG} / $ARG with the defaults of the global ARGs."""
        return re.sub(r"\$\{?(\w+)\}?", lambda m: self.global_args.get(m.group(1), m.group(0)), text)


def parse(path: Path) -> Dockerfile:
    """Join continuation lines, drop comments, split into stages at each FROM."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{path}: dangling line continuation"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base=parts[0], name=name))
        elif not stages:
            assert keyword == "ARG", f"{path}: only ARG may come before the first FROM, got {keyword}"
            key, _, default = args.partition("=")
            global_args[key.strip()] = default.strip().strip('"')
        else:
            stages[-1].instructions.append(Instruction(keyword, args.strip()))
    return Dockerfile(global_args, stages)


def dockerignore_patterns() -> list[tuple[bool, str]]:
    """(negated, pattern) pairs from .dockerignore, in order."""
    rules = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((negated, line.lstrip("!").rstrip("/")))
    return rules


def is_ignored(relative: str) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern also matches everything below it."""
    ignored = False
    for negated, pattern in dockerignore_patterns():
        prefixes = [relative] + [str(p) for p in Path(relative).parents if str(p) != "."]
        if pattern == "**" or any(fnmatch.fnmatch(p, pattern) for p in prefixes):
            ignored = not negated
    return ignored


def copy_sources(stage: Stage) -> list[str]:
    """Context paths named by COPY/ADD in a stage (copies from other stages excluded)."""
    sources: list[str] = []
    for instr in stage.all("COPY") + stage.all("ADD"):
        words = json.loads(instr.args) if instr.args.startswith("[") else shlex.split(instr.args)
        if any(w.startswith("--from=") for w in words):
            continue
        words = [w for w in words if not w.startswith("--")]
        sources.extend(words[:-1])
    return sources


def console_scripts() -> set[str]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    return set(pyproject["project"]["scripts"])


@pytest.fixture(params=sorted(DOCKERFILES), ids=lambda name: f"{name} image")
def image(request: pytest.FixtureRequest) -> tuple[str, Dockerfile]:
    name: str = request.param
    return name, parse(DOCKERFILES[name])


def test_every_file_a_copy_names_exists_and_is_sent_in_the_build_context(
    image: tuple[str, Dockerfile],
) -> None:
    name, dockerfile = image
    sources = [s for stage in dockerfile.stages for s in copy_sources(stage)]
    assert sources, f"{name}: no COPY of project files found"
    for source in sources:
        path = REPO / source
        assert path.exists(), f"{name}: COPY {source} but {path} does not exist"
        assert not is_ignored(source.rstrip("/")), f"{name}: COPY {source} but .dockerignore excludes it"


def test_the_base_image_is_pinned_to_an_exact_version_or_digest(image: tuple[str, Dockerfile]) -> None:
    name, dockerfile = image
    for stage in dockerfile.stages:
        base = dockerfile.resolve(stage.base)
        if base in {s.name for s in dockerfile.stages}:
            continue
        assert "$" not in base, f"{name}: base {stage.base!r} uses an ARG without a default"
        pinned = "@sha256:" in base or re.search(r":\d+\.\d+\.\d+[-\w.]*$", base)
        assert pinned, f"{name}: base image {base!r} is not pinned to an exact tag (x.y.z) or a digest"


def test_the_build_is_multi_stage_and_the_final_stage_only_copies_the_built_environment(
    image: tuple[str, Dockerfile],
) -> None:
    name, dockerfile = image
    assert len(dockerfile.stages) >= 2, f"{name}: expected a build stage and a runtime stage"
    final = dockerfile.stages[-1]
    copies = final.all("COPY")
    assert copies, f"{name}: the final stage copies nothing"
    assert all("--from=" in c.args for c in copies), f"{name}: the final stage copies project sources"
    for run in final.all("RUN"):
        for tool in BUILD_TOOLS:
            assert not re.search(rf"(install|add)\b[^&;]*\b{re.escape(tool)}\b", run.args), (
                f"{name}: the final stage installs build tool {tool!r}: {run.args}"
            )


def test_the_final_stage_runs_as_a_non_root_user(image: tuple[str, Dockerfile]) -> None:
    name, dockerfile = image
    users = dockerfile.stages[-1].all("USER")
    assert users, f"{name}: the final stage has no USER (it would run as root)"
    user = users[-1].args.split(":")[0]
    assert user not in {"root", "0"}, f"{name}: USER {users[-1].args} is root"
    assert user.isdigit(), f"{name}: USER should be numeric so runAsNonRoot can verify it, got {user!r}"


def test_the_entrypoint_is_the_projects_console_script(image: tuple[str, Dockerfile]) -> None:
    name, dockerfile = image
    entrypoints = dockerfile.stages[-1].all("ENTRYPOINT")
    assert entrypoints, f"{name}: no ENTRYPOINT in the final stage"
    command = json.loads(entrypoints[-1].args)
    assert isinstance(command, list), f"{name}: ENTRYPOINT must be exec form (a JSON list)"
    assert command[0] == EXPECTED_ENTRYPOINT[name]
    assert command[0] in console_scripts(), f"{name}: {command[0]} is not a console script in pyproject.toml"


def test_the_worker_image_can_take_a_cuda_jax_through_a_build_arg() -> None:
    dockerfile = parse(DOCKERFILES["worker"])
    build = next(stage for stage in dockerfile.stages if stage.name == "build")
    args = {a.args.split("=")[0] for a in build.all("ARG")}
    assert "JAX_EXTRA" in args
    assert any("jax[${JAX_EXTRA}]" in r.args for r in build.all("RUN"))


def test_the_operator_image_installs_no_jax() -> None:
    dockerfile = parse(DOCKERFILES["operator"])
    runs = " ".join(r.args for r in dockerfile.stages[0].all("RUN"))
    assert "--no-deps" in runs
    installs = re.sub(r'python -c "[^"]*"', "", runs)  # the import check names what must be absent
    assert "jax" not in installs


def test_the_dockerignore_matcher_used_here_follows_last_match_wins() -> None:
    assert is_ignored(".venv/bin/python")
    assert is_ignored("tests/unit/test_layout.py")
    assert not is_ignored("worker/grok_worker/cli.py")
    assert is_ignored("worker/grok_worker/__pycache__")


def test_the_dependency_layers_come_before_the_projects_code(image: tuple[str, Dockerfile]) -> None:
    """A code change must not re-install the dependencies: the RUN that installs them comes before
    any COPY of the project's source folders, and depends on no file that changes with the code."""
    name, dockerfile = image
    build = next(stage for stage in dockerfile.stages if stage.name == "build")
    keywords = [(i.keyword, i.args) for i in build.instructions]
    first_source = next(
        n for n, (k, a) in enumerate(keywords) if k == "COPY" and a.startswith(("operator/", "worker/"))
    )
    installs = [n for n, (k, a) in enumerate(keywords) if k == "RUN" and "-c requirements.lock" in a]
    assert installs, f"{name}: no dependency install from the lock"
    assert installs[0] < first_source, f"{name}: dependencies are installed after the code is copied"
    copied_before = " ".join(a for k, a in keywords[: installs[0]] if k == "COPY")
    assert "pyproject.toml" not in copied_before, (
        f"{name}: the dependency layer depends on all of pyproject.toml"
    )


def _lock() -> dict[str, str]:
    pins = (
        line.split("==") for line in (REPO / "requirements.lock").read_text().splitlines() if "==" in line
    )
    return {name.lower().replace("_", "-"): version for name, version in pins}


def _requirement_name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


@pytest.mark.parametrize("pyproject", ["pyproject.toml", "docker/operator.pyproject.toml"])
def test_the_lock_pins_the_build_backend(pyproject: str) -> None:
    """What builds the project is pinned like what it runs on, so a new setuptools release cannot
    change or break a build of an old commit."""
    requires = tomllib.loads((REPO / pyproject).read_text())["build-system"]["requires"]
    lock = _lock()
    assert requires
    for requirement in requires:
        assert _requirement_name(requirement) in lock, (
            f"{pyproject}: {requirement} is not in requirements.lock"
        )


def test_the_project_is_built_with_the_locked_backend(image: tuple[str, Dockerfile]) -> None:
    name, dockerfile = image
    build = next(stage for stage in dockerfile.stages if stage.name == "build")
    runs = [i.args for i in build.instructions if i.keyword == "RUN"]
    locked = " ".join(r for r in runs if "-c requirements.lock" in r)
    for backend in ("setuptools", "wheel"):
        assert backend in locked, f"{name}: {backend} is not installed from the lock"
    project = [r for r in runs if re.search(r"pip install [^&]* \.( |$)", r)]
    assert project, f"{name}: no install of the project itself"
    assert all("--no-build-isolation" in r for r in project), (
        f"{name}: the project is built in an isolated env"
    )


def test_make_venv_builds_the_project_with_the_locked_backend() -> None:
    recipe = (REPO / "Makefile").read_text().split("$(STAMP):", 1)[1].split("touch $(STAMP)", 1)[0]
    installs = [line.strip() for line in recipe.splitlines() if "pip install" in line]
    assert "-c requirements.lock" in installs[0]
    assert "setuptools wheel" in installs[0]
    assert all("-c requirements.lock" in line for line in installs)
    assert "--no-build-isolation" in installs[-1]
    assert "-e '.[dev]'" in installs[-1]
