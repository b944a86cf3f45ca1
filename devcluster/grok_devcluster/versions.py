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


def parse_groups(document: dict[str, Any]) -> dict[str, GoModuleGroup]:
    """Validate a parsed versions.toml; return its groups by name, in file order."""
    groups: dict[str, GoModuleGroup] = {}
    seen_binaries: dict[str, str] = {}
    for name, table in document.items():
        if not isinstance(table, dict):
            raise VersionsError(f"top-level key {name!r} must be a [table] describing one Go module")
        known = {"module", "version", "replace", "replace_version", "binaries", "ldflags"}
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
        group = GoModuleGroup(
            name=name,
            module=str(table["module"]),
            version=version,
            binaries=binaries,
            replace=replace,
            replace_version=replace_version,
            ldflags=tuple(ldflags.items()),
        )
        group.ldflag_values()  # fail early on a bad placeholder
        groups[name] = group
    return groups


def load_groups(path: Path | None = None) -> dict[str, GoModuleGroup]:
    """Read versions.toml (the packaged one unless `path` is given)."""
    if path is None:
        text = resources.files("grok_devcluster").joinpath("versions.toml").read_text(encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise VersionsError(f"versions.toml is not valid TOML: {err}") from err
    return parse_groups(document)


def group_of(binary: str, groups: dict[str, GoModuleGroup]) -> GoModuleGroup:
    """The group that builds `binary`; a clear error for an unknown name."""
    for group in groups.values():
        if binary in group.binaries:
            return group
    known = sorted(b for g in groups.values() for b in g.binaries)
    raise VersionsError(f"no binary named {binary!r} in versions.toml; known binaries: {known}")
