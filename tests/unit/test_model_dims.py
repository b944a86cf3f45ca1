"""One dimensions type, `grok_worker.model_config.ModelDims`: the worker contract, the GrokDeployment
API and `ModelConfig` share its fields and its rules, so the operator refuses exactly the dimensions
a worker would refuse, naming spec.model.dimensions.<field> and the fix."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from grok_operator.api import api_field_name
from grok_operator.crd import spec_schema
from grok_operator.render.config import worker_config
from grok_operator.validation import ValidSpec, validate
from grok_worker.contract import SCHEMA_VERSION, WorkerConfig
from grok_worker.contract_version import accepted_fields
from grok_worker.model_config import (
    DIMENSION_MINIMUMS,
    DIMENSION_NAMES,
    PRESETS,
    InvalidDimsError,
    ModelConfig,
    ModelDims,
    config_from_contract,
)
from grok_worker.server.config import ConfigError, resolve
from grok_worker.server.main import add_arguments

#: Valid dimensions (the tiny preset's); each case below breaks one rule.
TINY = dataclasses.asdict(PRESETS["tiny"].dims)

BROKEN = [
    (
        "query heads that the key/value heads do not divide",
        {"n_q_heads": 5, "n_kv_heads": 2},
        "n_kv_heads",
        "use one of 1, 5",
    ),
    (
        "more experts per token than experts",
        {"n_experts": 2, "experts_per_token": 3},
        "experts_per_token",
        "use at most 2",
    ),
    ("an odd head size", {"head_dim": 15}, "head_dim", "use an even size such as 16"),
    ("an expert FFN size off the int8 scale groups", {"ffn_size": 100}, "ffn_size", "use e.g. 104"),
]


def operator_problems(dims: dict[str, Any]) -> list[str]:
    spec = {
        "model": {
            "dimensions": {api_field_name(name): value for name, value in dims.items()},
            "checkpoint": {"hostPath": {"path": "/m"}},
        },
        "topology": {"hostsPerReplica": 1, "gpusPerHost": 1},
    }
    result = validate(spec, name="custom")
    return [] if isinstance(result, ValidSpec) else [str(p) for p in result]


def worker_error(dims: dict[str, Any], tmp_path: Path) -> str:
    """What `grok-worker serve --config FILE` says about a config with these dimensions."""
    config = tmp_path / "worker.json"
    config.write_text(json.dumps({"model": {"preset": None, "dims": dims}}))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with pytest.raises(ConfigError) as err:
        resolve(parser.parse_args(["--config", str(config)]), environ={})
    return str(err.value)


@pytest.mark.parametrize(("case", "change", "field", "fix"), BROKEN, ids=[c[0] for c in BROKEN])
def test_the_operator_and_the_worker_refuse_the_same_dimensions_with_the_same_words(
    case: str, change: dict[str, int], field: str, fix: str, tmp_path: Path
) -> None:
    dims = {**TINY, **change}
    problems = operator_problems(dims)
    path = f"spec.model.dimensions.{api_field_name(field)}: "
    ours = [p.removeprefix(path) for p in problems if p.startswith(path)]
    assert ours, f"{case}: the operator reported {problems}"
    assert fix in ours[0]
    assert f"{field}: {ours[0]}" in worker_error(dims, tmp_path)


def test_each_dimension_below_its_minimum_is_refused_by_schema_operator_and_worker(tmp_path: Path) -> None:
    properties = spec_schema()["properties"]["model"]["properties"]["dimensions"]["properties"]
    assert list(properties) == [api_field_name(name) for name in DIMENSION_NAMES]
    for name, least in DIMENSION_MINIMUMS.items():
        assert properties[api_field_name(name)]["minimum"] == least
        dims = {**TINY, name: least - 1}
        assert any(
            p.startswith(f"spec.model.dimensions.{api_field_name(name)}:") for p in operator_problems(dims)
        )
        assert name in worker_error(dims, tmp_path)
        with pytest.raises(InvalidDimsError, match=f"{name}: must be at least {least}"):
            ModelDims(**dims)


def test_descriptions_quote_grok1_from_its_preset() -> None:
    properties = spec_schema()["properties"]["model"]["properties"]["dimensions"]["properties"]
    grok1 = PRESETS["grok-1"]
    for name in DIMENSION_NAMES:
        assert properties[api_field_name(name)]["description"].endswith(
            f" Grok-1 has {getattr(grok1, name)}."
        )


def test_the_api_the_contract_and_the_model_hold_the_same_type() -> None:
    model_fields = [f.name for f in dataclasses.fields(ModelConfig)]
    assert tuple(model_fields[: len(DIMENSION_NAMES)]) == DIMENSION_NAMES
    assert issubclass(ModelConfig, ModelDims)
    spec = {
        "model": {
            "dimensions": {api_field_name(name): value for name, value in TINY.items()},
            "checkpoint": {"hostPath": {"path": "/m"}},
        },
        "topology": {"hostsPerReplica": 1, "gpusPerHost": 1, "gpuMemory": "16Gi"},
    }
    valid = validate(spec, name="custom")
    assert isinstance(valid, ValidSpec), valid
    assert type(valid.spec.model.dimensions) is ModelDims
    config = WorkerConfig.model_validate_json(worker_config(valid).model_dump_json())
    assert config.model.dims == PRESETS["tiny"].dims
    assert json.loads(worker_config(valid).model_dump_json())["model"]["dims"] == TINY  # snake_case
    assert config_from_contract(config.model).dims == PRESETS["tiny"].dims


def test_a_newer_minor_may_add_a_dimension_field_that_this_worker_drops() -> None:
    major, minor = SCHEMA_VERSION.split(".")
    newer = {"schema_version": f"{major}.{int(minor) + 1}", "model": {"dims": {**TINY, "rope_scaling": 2}}}
    kept = accepted_fields(newer)
    assert kept["model"]["dims"] == TINY
    assert WorkerConfig.model_validate(kept).model.dims == PRESETS["tiny"].dims
