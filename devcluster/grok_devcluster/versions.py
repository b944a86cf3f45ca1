"""Load the pinned control-plane versions from versions.toml into typed, validated records.

Data flow: versions.toml (package data) -> `load_groups()` -> one `GoModuleGroup` per wrapper Go
module -> `gomod.py` renders the wrapper module and ldflags from it, `binaries.py` uses
`GoModuleGroup.version` as the cache key of each binary it builds.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

_SEMVER = re.compile(r"^v(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)$")


class VersionsError(ValueError):
    """versions.toml is malformed; the message names the group and field to fix."""


@dataclass(frozen=True)
class GeneratedMain:
    """A main package of our own inside the wrapper module: it blank-imports `imports` (plugins
    that register themselves) and calls `run` (a `package.Function` path), for programs such as
    CoreDNS that are meant to be assembled from the plugins one needs."""

    run: str
    imports: tuple[str, ...]

    @property
    def run_package(self) -> str:
        return self.run.rsplit(".", 1)[0]

    @property
    def run_function(self) -> str:
        return self.run.rsplit(".", 1)[1]


@dataclass(frozen=True)
class GoModuleGroup:
    """Binaries built from one Go module at one version, through one generated wrapper module.

    `replace` lists modules the upstream go.mod points at local folders; the wrapper maps each one
    to `replace_version` instead. `binaries` maps a binary name to its Go main package.
    `ldflags` maps a `-X` variable to a value template ({version}, {bare_version}, {major}, {minor}).
    """

    name: str
    module: str
    version: str
    binaries: dict[str, str]
    replace: tuple[str, ...] = ()
    replace_version: str = ""
    ldflags: tuple[tuple[str, str], ...] = ()
    # A main package generated into the wrapper (./cmd/<binary>): (function to call, blank imports).
    main: GeneratedMain | None = None

    @property
    def major(self) -> str:
        return _semver(self.name, self.version)["major"]

    @property
    def minor(self) -> str:
        return _semver(self.name, self.version)["minor"]

    def ldflag_values(self) -> list[tuple[str, str]]:
        """Each `-X` variable with its template filled in from this group's version."""
        fields = {
            "version": self.version,
            "bare_version": self.version.removeprefix("v"),
            "major": self.major,
            "minor": self.minor,
        }
        try:
            return [(key, template.format(**fields)) for key, template in self.ldflags]
        except (KeyError, IndexError) as err:
            raise VersionsError(
                f"[{self.name}.ldflags] uses an unknown placeholder {err}; use only {{{'}, {'.join(fields)}}}"
            ) from err


def _semver(group: str, version: str) -> dict[str, str]:
    match = _SEMVER.match(version)
    if match is None:
        raise VersionsError(f"[{group}] version {version!r} is not of the form vMAJOR.MINOR.PATCH")
    return match.groupdict()


def _string_list(group: str, field: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise VersionsError(f"[{group}] {field} must be a list of strings, got {value!r}")
    return tuple(value)


def _string_table(group: str, field: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise VersionsError(f"[{group}.{field}] must be a table of strings, got {value!r}")
    return dict(value)


#: Tables of versions.toml that pin something other than a Go module.
NON_GO_TABLES = ("debian", "base-image")


def _main_table(group: str, value: Any) -> GeneratedMain | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"run", "imports"}:
        raise VersionsError(
            f"[{group}.main] must have exactly `run` (package.Function) and `imports` (a list)"
        )
    run = str(value["run"])
    if "." not in run.rsplit("/", 1)[-1]:
        raise VersionsError(f"[{group}.main] run = {run!r} must name a function: <package path>.<Function>")
    return GeneratedMain(run=run, imports=_string_list(f"{group}.main", "imports", value["imports"]))


def parse_groups(document: dict[str, Any]) -> dict[str, GoModuleGroup]:
    """Validate a parsed versions.toml; return its groups by name, in file order."""
    groups: dict[str, GoModuleGroup] = {}
    seen_binaries: dict[str, str] = {}
    for name, table in document.items():
        if name in NON_GO_TABLES:
            continue
        if not isinstance(table, dict):
            raise VersionsError(f"top-level key {name!r} must be a [table] describing one Go module")
        known = {"module", "version", "replace", "replace_version", "binaries", "ldflags", "main"}
        unknown = sorted(set(table) - known)
        if unknown:
            raise VersionsError(f"[{name}] has unknown field(s) {unknown}; allowed: {sorted(known)}")
        for required in ("module", "version", "binaries"):
            if required not in table:
                raise VersionsError(f"[{name}] is missing required field {required!r}")
        version = str(table["version"])
        _semver(name, version)
        replace = _string_list(name, "replace", table.get("replace", []))
        replace_version = str(table.get("replace_version", ""))
        if replace and not replace_version:
            raise VersionsError(f"[{name}] lists `replace` modules but no `replace_version` to map them to")
        binaries = _string_table(name, "binaries", table["binaries"])
        if not binaries:
            raise VersionsError(f"[{name}.binaries] is empty; name at least one binary and its Go package")
        for binary in binaries:
            if binary in seen_binaries:
                raise VersionsError(
                    f"binary {binary!r} is declared by both [{seen_binaries[binary]}] and [{name}]"
                )
            seen_binaries[binary] = name
        ldflags = _string_table(name, "ldflags", table.get("ldflags", {}))
        main = _main_table(name, table.get("main"))
        group = GoModuleGroup(
            name=name,
            module=str(table["module"]),
            version=version,
            binaries=binaries,
            replace=replace,
            replace_version=replace_version,
            ldflags=tuple(ldflags.items()),
            main=main,
        )
        group.ldflag_values()  # fail early on a bad placeholder
        groups[name] = group
    return groups


def load_groups(path: Path | None = None) -> dict[str, GoModuleGroup]:
    """Read versions.toml (the packaged one unless `path` is given)."""
    return parse_groups(_document(path))


def group_of(binary: str, groups: dict[str, GoModuleGroup]) -> GoModuleGroup:
    """The group that builds `binary`; a clear error for an unknown name."""
    for group in groups.values():
        if binary in group.binaries:
            return group
    known = sorted(b for g in groups.values() for b in g.binaries)
    raise VersionsError(f"no binary named {binary!r} in versions.toml; known binaries: {known}")


@dataclass(frozen=True)
class BaseImage:
    """The local base image both Dockerfiles build on: `debootstrap --variant=minbase` settings."""

    suite: str
    mirror: str
    include: tuple[str, ...]


def _document(path: Path | None) -> dict[str, Any]:
    if path is None:
        text = resources.files("grok_devcluster").joinpath("versions.toml").read_text(encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise VersionsError(f"versions.toml is not valid TOML: {err}") from err


def load_debian_packages(path: Path | None = None) -> dict[str, str]:
    """[debian] packages: Debian package name -> exact version, installed by `setup-node`."""
    table = _document(path).get("debian")
    if not isinstance(table, dict) or "packages" not in table:
        raise VersionsError("versions.toml has no [debian] table with `packages = { name = version }`")
    return _string_table("debian", "packages", table["packages"])


def load_base_image(path: Path | None = None) -> BaseImage:
    """[base-image]: the debootstrap suite, mirror and packages of the local base image."""
    table = _document(path).get("base-image")
    if not isinstance(table, dict) or not {"suite", "mirror", "include"} <= set(table):
        raise VersionsError("versions.toml needs a [base-image] table with suite, mirror and include")
    return BaseImage(
        suite=str(table["suite"]),
        mirror=str(table["mirror"]),
        include=_string_list("base-image", "include", table["include"]),
    )
