"""Pure checks of the Helm chart's files (no helm binary, no cluster).

The chart's contract with its users is values.yaml + values.schema.json: the schema must be strict
(additionalProperties false on every object, a description on every leaf) and agree with values.yaml
and the templates both ways: every value is described and used, every `.Values.x` a template reads
exists. Rendering and schema enforcement by Helm itself are tested against the real control plane in
tests/integration/test_chart_install.py.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "grok-operator"
SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
VALUES: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
TEMPLATES = sorted((CHART / "templates").rglob("*"))
JSON_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "integer": int,
    "number": (int, float),
}


def walk_schema(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for key, child in node.get("properties", {}).items():
        yield from walk_schema(child, f"{path}.{key}" if path else key)


def walk_values(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, child in node.items():
            yield from walk_values(child, f"{path}.{key}" if path else key)


def schema_at(path: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = SCHEMA
    for part in path.split("."):
        if node is None:
            return None
        node = node.get("properties", {}).get(part)
    return node


def template_value_references() -> set[str]:
    """`.Values.a.b` paths the templates read (longest dotted name after .Values)."""
    refs: set[str] = set()
    for path in TEMPLATES:
        if path.is_file():
            refs.update(re.findall(r"\.Values\.([A-Za-z0-9_.]+[A-Za-z0-9_])", path.read_text()))
    return refs


def test_every_schema_object_with_properties_forbids_unknown_keys() -> None:
    loose = [
        p or "<root>"
        for p, n in walk_schema(SCHEMA)
        if "properties" in n and n.get("additionalProperties") is not False
    ]
    assert loose == [], f"objects that accept unknown keys (add additionalProperties: false): {loose}"


def test_every_schema_leaf_has_a_description() -> None:
    undocumented = [p for p, n in walk_schema(SCHEMA) if p and not n.get("description", "").strip()]
    assert undocumented == [], f"schema entries without a description: {undocumented}"


def test_every_value_in_values_yaml_is_in_the_schema_with_the_right_type() -> None:
    for path, value in walk_values(VALUES):
        if not path:
            continue
        node = schema_at(path)
        if node is None:
            # Keys inside a free-form object (annotations, securityContext) are allowed only there:
            # the nearest described ancestor must not be a strict object.
            ancestor = path
            while schema_at(ancestor) is None:
                ancestor = ancestor.rpartition(".")[0]
            described = schema_at(ancestor) if ancestor else SCHEMA
            assert described is not None
            assert described.get("additionalProperties") is not False, (
                f"values.yaml has {path!r} but values.schema.json does not describe it"
            )
            continue
        expected = node.get("type")
        if isinstance(expected, str):
            wrong_type = not isinstance(value, JSON_TYPES[expected]) or (
                expected == "integer" and isinstance(value, bool)
            )
            assert not wrong_type, f"{path}: values.yaml has {value!r}, the schema says {expected}"
        if "enum" in node:
            assert value in node["enum"], f"{path}: default {value!r} is not one of {node['enum']}"
        if "pattern" in node and isinstance(value, str):
            assert re.search(node["pattern"], value), (
                f"{path}: default {value!r} does not match {node['pattern']}"
            )


def test_every_schema_property_has_a_default_in_values_yaml() -> None:
    flat = {p for p, _ in walk_values(VALUES)}
    missing = [p for p, _ in walk_schema(SCHEMA) if p and p not in flat]
    assert missing == [], f"described in the schema but missing from values.yaml: {missing}"


def test_every_value_the_templates_read_exists_in_values_yaml() -> None:
    flat = {p for p, _ in walk_values(VALUES)}
    unknown = sorted(ref for ref in template_value_references() if ref not in flat)
    assert unknown == [], f"templates read values that values.yaml does not define: {unknown}"


def test_every_top_level_value_is_read_by_some_template() -> None:
    used = {ref.split(".")[0] for ref in template_value_references()}
    unused = sorted(set(VALUES) - used)
    assert unused == [], f"values no template reads (dead knobs): {unused}"


def test_the_default_security_context_is_restricted() -> None:
    container = VALUES["securityContext"]
    pod = VALUES["podSecurityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["readOnlyRootFilesystem"] is True
    assert container["capabilities"]["drop"] == ["ALL"]
    assert container["runAsNonRoot"] is True
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] != 0
    assert container["seccompProfile"]["type"] == pod["seccompProfile"]["type"] == "RuntimeDefault"


def test_the_default_operator_user_matches_the_images_user() -> None:
    dockerfile = (REPO / "docker" / "Dockerfile.operator").read_text()
    users = re.findall(r"^USER (\d+):(\d+)$", dockerfile, flags=re.M)
    assert users[-1] == (
        str(VALUES["podSecurityContext"]["runAsUser"]),
        str(VALUES["podSecurityContext"]["runAsGroup"]),
    )


def kube_version_admits(constraint: str, version: str) -> bool:
    """Enough of Helm's semver constraints for a kubeVersion: comparisons joined by spaces (AND)."""

    def key(text: str) -> tuple[int, ...]:
        return tuple(int(x) for x in text.lstrip("v").split("-")[0].split(".")[:3])

    ops = {
        ">=": lambda a, b: a >= b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        "<": lambda a, b: a < b,
    }
    for term in constraint.split():
        match = re.fullmatch(r"(>=|<=|>|<)(v?[\d.]+(?:-\S*)?)", term)
        assert match, f"unsupported kubeVersion term {term!r}"
        if not ops[match.group(1)](key(version), key(match.group(2))):
            return False
    return True


def test_the_charts_kube_version_range_admits_the_pinned_control_plane_and_not_older_than_1_28() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pinned = tomllib.loads((REPO / "devcluster" / "grok_devcluster" / "versions.toml").read_text())[
        "kubernetes"
    ]["version"]
    assert kube_version_admits(chart["kubeVersion"], pinned)
    assert not kube_version_admits(chart["kubeVersion"], "v1.27.9"), "pod-index label needs 1.28"


def test_chart_metadata_names_the_chart_and_an_app_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "grok-operator" == CHART.name
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert chart["appVersion"] == pyproject["project"]["version"]
