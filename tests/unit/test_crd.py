"""The GrokDeployment CRD is generated from the pydantic models, and the committed file matches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from grok_operator import constants as c
from grok_operator.crd import CRD_PATH, build_crd, render_crd_yaml, structural

REPO = Path(__file__).resolve().parents[2]


def _version() -> dict[str, Any]:
    versions: list[dict[str, Any]] = build_crd()["spec"]["versions"]
    return versions[0]


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = _version()["schema"]["openAPIV3Schema"]
    return schema


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for name, prop in node.get("properties", {}).items():
        out += _walk(prop, f"{path}.{name}")
    if "items" in node:
        out += _walk(node["items"], f"{path}[]")
    return out


def test_the_committed_crd_is_the_generated_one() -> None:
    committed = (REPO / CRD_PATH).read_text()
    assert committed == render_crd_yaml(), "run `grok-operator crd > charts/grok-operator/crds/...yaml`"


def test_every_spec_and_status_field_has_a_description_for_kubectl_explain() -> None:
    for root in ("spec", "status"):
        for path, node in _walk(_schema()["properties"][root], root):
            assert node.get("description"), f"{path} has no description"


def test_the_schema_is_structural() -> None:
    for path, node in _walk(_schema()):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields") or path == "", path
        for key in ("$ref", "anyOf", "oneOf", "allOf", "title", "$defs"):
            assert key not in node, f"{path} has {key}"
        if "additionalProperties" in node:
            assert isinstance(node["additionalProperties"], dict), path


@pytest.mark.parametrize(
    ("path", "rule_fragment"),
    [
        ("spec.model.checkpoint", "has(self.pvc), has(self.hostPath), has(self.uri)"),
        ("spec.model", "has(self.preset) != has(self.dimensions)"),
        ("spec.topology", "self.hostsPerReplica * self.gpusPerHost"),
        ("spec.rollout", "self.maxUnavailable + self.maxSurge >= 1"),
    ],
)
def test_cross_field_rules_are_cel_validations(path: str, rule_fragment: str) -> None:
    node = _schema()
    for part in path.split("."):
        node = node["properties"][part]
    rules = [v["rule"] for v in node["x-kubernetes-validations"]]
    assert any(rule_fragment in rule for rule in rules), rules


@pytest.mark.parametrize(
    ("path", "key", "value"),
    [
        ("spec.replicas", "minimum", 0),
        ("spec.topology.gpusPerHost", "minimum", 1),
        ("spec.topology.gpuResourceName", "default", "nvidia.com/gpu"),
        ("spec.model.quantization", "enum", ["int8", "bf16"]),
        ("spec.serving.port", "maximum", 65535),
        ("spec.failurePolicy.action", "enum", ["RecreateGroup", "Ignore"]),
    ],
)
def test_ranges_enums_and_defaults_are_enforced_by_the_apiserver(path: str, key: str, value: object) -> None:
    node = _schema()
    for part in path.split("."):
        node = node["properties"][part]
    assert node[key] == value


def test_object_defaults_are_complete_so_cel_rules_hold_on_them() -> None:
    rollout = _schema()["properties"]["spec"]["properties"]["rollout"]
    assert rollout["default"] == {"maxUnavailable": 1, "maxSurge": 0}


def test_status_keeps_kopfs_bookkeeping_and_conditions_are_a_map() -> None:
    status = _schema()["properties"]["status"]
    assert status["x-kubernetes-preserve-unknown-fields"] is True
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_names_subresources_and_printer_columns() -> None:
    crd = build_crd()
    names = crd["spec"]["names"]
    assert (crd["metadata"]["name"], names["kind"], names["plural"]) == (
        c.CRD_NAME,
        "GrokDeployment",
        "grokdeployments",
    )
    assert "grokd" in names["shortNames"]
    assert crd["spec"]["scope"] == "Namespaced"
    version = _version()
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = [col["name"] for col in version["additionalPrinterColumns"]]
    assert columns == ["Replicas", "Ready", "Phase", "Endpoint", "Age"]


def test_structural_collapses_optional_references_and_keeps_the_field_description() -> None:
    schema = {
        "$defs": {
            "Inner": {
                "type": "object",
                "description": "type doc",
                "properties": {"a": {"type": "integer", "title": "A"}},
            }
        },
        "type": "object",
        "properties": {
            "inner": {
                "anyOf": [{"$ref": "#/$defs/Inner"}, {"type": "null"}],
                "default": None,
                "description": "field doc",
            }
        },
    }
    out = structural(schema)
    assert out["properties"]["inner"] == {
        "type": "object",
        "description": "field doc",
        "properties": {"a": {"type": "integer"}},
    }


def test_the_yaml_parses_back_to_the_same_object() -> None:
    text = render_crd_yaml()
    assert text.startswith("# Generated by `grok-operator crd`")
    assert yaml.safe_load(text) == build_crd()
