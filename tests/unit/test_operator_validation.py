"""Semantic validation: every invalid spec is reported with the field and the fix."""

from __future__ import annotations

from typing import Any

import pytest

from grok_operator.validation import SpecProblem, ValidSpec, validate
from grok_worker.contract import MeshSpec


def spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": {"preset": "grok-1", "checkpoint": {"hostPath": {"path": "/m"}}},
        "topology": {"hostsPerReplica": 1, "gpusPerHost": 8},
    }
    base.update(overrides)
    return base


INVALID = [
    ("negative replicas", spec(replicas=-1), "spec.replicas", "greater than or equal to 0"),
    (
        "zero GPUs per host",
        spec(topology={"gpusPerHost": 0}),
        "spec.topology.gpusPerHost",
        "greater than or equal to 1",
    ),
    (
        "a mesh that does not multiply to the devices",
        spec(topology={"hostsPerReplica": 1, "gpusPerHost": 8, "mesh": {"model": 4}}),
        "spec.topology.mesh",
        "must equal hostsPerReplica×gpusPerHost = 8",
    ),
    (
        "query heads not divisible by the model axis",
        spec(topology={"hostsPerReplica": 1, "gpusPerHost": 5}),
        "spec.topology.mesh.model",
        "48 query heads are not divisible by the model axis 5; use a model axis among 1, 2, 3, 4, 6, 8, 12, 16, 24, 48",
    ),
    (
        "experts not divisible by the expert axis",
        spec(topology={"hostsPerReplica": 1, "gpusPerHost": 6, "mesh": {"expert": 3, "model": 2}}),
        "spec.topology.mesh.expert",
        "8 experts are not divisible by the expert axis 3",
    ),
    (
        "decode slots not divisible by the data axis",
        spec(
            topology={"hostsPerReplica": 1, "gpusPerHost": 8, "mesh": {"data": 8}}, serving={"maxBatch": 12}
        ),
        "spec.serving.maxBatch",
        "use a multiple of 8",
    ),
    (
        "an unknown preset",
        spec(model={"preset": "grok-2", "checkpoint": {"hostPath": {"path": "/m"}}}),
        "spec.model.preset",
        "unknown preset 'grok-2'; use one of ['grok-1', 'small', 'tiny']",
    ),
    (
        "inconsistent explicit dimensions",
        spec(
            model={
                "dimensions": {
                    "vocabSize": 100,
                    "dModel": 64,
                    "nLayers": 2,
                    "nQHeads": 6,
                    "nKvHeads": 4,
                    "headDim": 16,
                    "nExperts": 4,
                    "expertsPerToken": 2,
                    "ffnSize": 128,
                    "maxSeqLen": 64,
                },
                "checkpoint": {"hostPath": {"path": "/m"}},
            },
            topology={"hostsPerReplica": 1, "gpusPerHost": 1},
        ),
        "spec.model.dimensions.nKvHeads",
        "do not divide the 6 query heads (grouped-query attention gives each key/value head a whole "
        "group of query heads); use one of 1, 2, 3, 6",
    ),
    ("no model at all", {"topology": {}}, "spec.model", "Field required"),
    (
        "neither preset nor dimensions",
        spec(model={"checkpoint": {"hostPath": {"path": "/m"}}}),
        "spec.model",
        "set preset (one of ['grok-1', 'small', 'tiny']) or dimensions",
    ),
    (
        "a missing checkpoint source",
        spec(model={"preset": "grok-1", "checkpoint": {}}),
        "spec.model.checkpoint",
        "pvc.claimName or hostPath.path",
    ),
    (
        "an object-store checkpoint",
        spec(model={"preset": "grok-1", "checkpoint": {"uri": "s3://b/grok"}}),
        "spec.model.checkpoint.uri",
        "use checkpoint.pvc or checkpoint.hostPath",
    ),
    (
        "a longer sequence than the model supports",
        spec(serving={"maxSequenceLength": 9000}),
        "spec.serving.maxSequenceLength",
        "use at most 8192",
    ),
    (
        "an operator-owned env var",
        spec(env=[{"name": "GROK_MESH", "value": "x"}]),
        "spec.env[0].name",
        "remove it",
    ),
    ("an unnamed env var", spec(env=[{"value": "x"}]), "spec.env[0].name", "needs a name"),
    ("an unknown field", spec(replica=3), "spec.replica", "Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("case", "raw", "field", "fix"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_specs_name_the_field_and_the_fix(
    case: str, raw: dict[str, Any], field: str, fix: str
) -> None:
    result = validate(raw, name="x")
    assert isinstance(result, list), f"{case} was accepted"
    assert any(p.field == field and fix in p.message for p in result), [str(p) for p in result]


def test_a_long_name_is_refused_because_pod_names_derive_from_it() -> None:
    result = validate(spec(), name="n" * 41)
    assert isinstance(result, list)
    assert result[0].field == "metadata.name"


def test_a_valid_spec_defaults_the_mesh_to_model_inside_a_host_and_experts_across_hosts() -> None:
    result = validate(spec(topology={"hostsPerReplica": 2, "gpusPerHost": 8}), name="ok")
    assert isinstance(result, ValidSpec)
    assert result.mesh == MeshSpec(expert=2, model=8)
    assert result.devices_per_replica == 16
    assert result.device_memory_bytes == 80 * 2**30
    assert result.max_seq_len == 8192


def test_problems_print_as_field_colon_message() -> None:
    assert str(SpecProblem("spec.replicas", "must be >= 0")) == "spec.replicas: must be >= 0"
