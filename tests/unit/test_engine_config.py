"""`grok-worker serve` configuration: file + flags + environment, errors that name the field."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from grok_worker.server.config import ConfigError, resolve
from grok_worker.server.main import add_arguments


def parse(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(flags))


def test_flags_override_the_file_and_unset_fields_keep_defaults(tmp_path: Path) -> None:
    config = tmp_path / "worker.json"
    config.write_text(json.dumps({"model": {"preset": "tiny"}, "serving": {"max_batch": 3, "port": 6000}}))
    resolved = resolve(parse("--config", str(config), "--port", "7000"), environ={})
    assert (resolved.worker.serving.port, resolved.worker.serving.max_batch) == (7000, 3)
    # tiny's max length is 256: the default 8192 is lowered to it, buckets follow
    assert resolved.worker.serving.max_seq_len == 256
    assert resolved.buckets == (16, 32, 64, 128)


def test_an_explicit_length_beyond_the_model_is_an_error() -> None:
    with pytest.raises(
        ConfigError, match=r"serving.max_seq_len: 512 exceeds the model's maximum sequence length 256"
    ):
        resolve(parse("--preset", "tiny", "--max-seq-len", "512"), environ={})


def test_mock_engine_ignores_the_model_section() -> None:
    resolved = resolve(parse("--engine", "mock", "--max-seq-len", "64"), environ={}, model_engine=False)
    assert resolved.buckets == (16, 32)


def test_group_environment_and_mesh_override(tmp_path: Path) -> None:
    env = {
        "GROK_NUM_PROCESSES": "2",
        "GROK_PROCESS_ID": "1",
        "GROK_COORDINATOR_ADDRESS": "leader:8476",
        "GROK_MESH": "model=4",
    }
    resolved = resolve(parse("--preset", "tiny"), environ=env)
    assert resolved.group.process_id == 1
    assert resolved.mesh.model == 4
    with pytest.raises(ConfigError, match="GROK_PROCESS_ID=2 must be below GROK_NUM_PROCESSES=2"):
        resolve(parse("--preset", "tiny"), environ={**env, "GROK_PROCESS_ID": "2"})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"serving": {"max_batch": 0}}, "serving.max_batch: Input should be greater than or equal to 1"),
        ({"servng": {}}, "servng: Extra inputs are not permitted"),
        (
            {"serving": {"prefill_buckets": [64, 8]}},
            "serving.prefill_buckets: [64, 8] must be positive and strictly ascending",
        ),
    ],
)
def test_bad_files_name_the_field(tmp_path: Path, content: dict[str, object], message: str) -> None:
    config = tmp_path / "worker.json"
    config.write_text(json.dumps(content))
    with pytest.raises(ConfigError) as err:
        resolve(parse("--config", str(config), "--engine", "mock"), environ={}, model_engine=False)
    assert message in str(err.value)


def test_a_missing_config_file_names_its_source() -> None:
    with pytest.raises(ConfigError, match=r"GROK_CONFIG_FILE: config file /nope\.json does not exist"):
        resolve(parse(), environ={"GROK_CONFIG_FILE": "/nope.json"})
