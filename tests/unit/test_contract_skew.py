"""Version skew between operator and worker (grok_worker.contract_version).

tests/data/contract/<version>/ holds the worker configs an operator release rendered for the
GrokDeployments in examples/ (1.0: this release; regenerate a new folder, never an old one, with
`python tests/unit/test_contract_skew.py <version>`). Each fixture is read by today's worker; a
"next minor" config (a fixture with fields this worker does not know) is read with them dropped
and logged once; another major is refused naming both versions; and today's operator's config is
read by the reader of each fixture's release, which knows only that release's fields, so a field
added without a minor bump fails here.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from grok_operator.render.config import config_json
from grok_operator.validation import ValidSpec, validate
from grok_worker.contract import SCHEMA_VERSION, WorkerConfig
from grok_worker.contract_version import ContractVersionError, accepted_fields, parse_version, read_config

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "data" / "contract"
RELEASES = sorted(p for p in FIXTURES.iterdir() if p.is_dir())
CONFIGS = sorted(FIXTURES.glob("*/*.json"))


def rendered_configs() -> dict[str, str]:
    """Today's operator's worker config for each example GrokDeployment, by example name."""
    out = {}
    for path in sorted((REPO / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "GrokDeployment":
                valid = validate(doc["spec"], name=doc["metadata"]["name"])
                assert isinstance(valid, ValidSpec), f"{path.name}: {valid}"
                out[path.stem] = config_json(valid)
    return out


def field_paths(data: Any, prefix: str = "") -> set[str]:
    if not isinstance(data, dict):
        return set()
    paths = set()
    for key, value in data.items():
        paths.add(prefix + key)
        paths |= field_paths(value, f"{prefix}{key}.")
    return paths


def previous_reader(release_fields: set[str], release_version: str, text: str) -> dict[str, Any]:
    """What the worker of a release whose configs had `release_fields` makes of `text`: the same rule
    as today's reader, with that release's field set and version."""
    data = json.loads(text)
    theirs, ours = parse_version(data.get("schema_version", "1.0")), parse_version(release_version)
    if theirs[0] != ours[0]:
        raise ContractVersionError(f"{theirs} vs {ours}")
    unknown = field_paths(data) - release_fields
    if theirs[1] <= ours[1] and unknown:
        raise AssertionError(f"the release {release_version} reader refuses unknown fields {sorted(unknown)}")
    return data


def test_there_is_a_fixture_for_every_example_in_this_release() -> None:
    assert RELEASES, "no tests/data/contract/<version>/ fixtures"
    current = FIXTURES / SCHEMA_VERSION
    assert current.is_dir(), f"render tests/data/contract/{SCHEMA_VERSION}/ for the new schema version"
    assert {p.stem for p in current.glob("*.json")} == set(rendered_configs())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_release_fixture_is_read_by_this_worker(path: Path) -> None:
    config = read_config(path.read_text())
    assert isinstance(config, WorkerConfig)
    assert config.schema_version == json.loads(path.read_text()).get("schema_version", "1.0")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_next_minor_config_with_new_fields_is_read_and_the_fields_logged_once(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    major, minor = parse_version(SCHEMA_VERSION)
    data = json.loads(path.read_text())
    data["schema_version"] = f"{major}.{minor + 1}"
    data["serving"]["speculative_tokens"] = 4
    data["placement"] = {"zone": "a"}
    with caplog.at_level(logging.WARNING, logger="grok_worker.contract_version"):
        config = read_config(json.dumps(data))
        read_config(json.dumps(data))
    assert config.serving.max_seq_len == data["serving"]["max_seq_len"]
    assert config.model.preset == data["model"]["preset"]
    logged = [r.getMessage() for r in caplog.records if "speculative_tokens" in r.getMessage()]
    assert len(logged) <= 1  # once per process (an earlier parametrization may have logged it)
    assert "serving.speculative_tokens" not in json.dumps(accepted_fields(data))


def test_the_same_minor_still_refuses_a_typo() -> None:
    data = json.loads(CONFIGS[0].read_text())
    data["serving"]["max_seq_lenn"] = 5
    with pytest.raises(ValueError, match="max_seq_lenn"):
        read_config(json.dumps(data))


def test_another_major_is_refused_naming_both_versions() -> None:
    data = json.loads(CONFIGS[0].read_text())
    major, _ = parse_version(SCHEMA_VERSION)
    data["schema_version"] = f"{major + 1}.0"
    with pytest.raises(ContractVersionError) as err:
        read_config(json.dumps(data))
    assert f"{major + 1}.0" in str(err.value)
    assert SCHEMA_VERSION in str(err.value)


@pytest.mark.parametrize("release", RELEASES, ids=lambda p: p.name)
def test_todays_operator_config_is_read_by_each_releases_worker(release: Path) -> None:
    fields = set().union(*(field_paths(json.loads(p.read_text())) for p in release.glob("*.json")))
    for name, text in rendered_configs().items():
        assert previous_reader(fields, release.name, text), name


def test_the_worker_start_path_reads_a_next_minor_file_and_refuses_a_next_major(tmp_path: Path) -> None:
    import argparse

    from grok_worker.server.config import ConfigError, load_worker_config

    major, minor = parse_version(SCHEMA_VERSION)
    data = json.loads(CONFIGS[0].read_text())
    data["schema_version"] = f"{major}.{minor + 1}"
    data["serving"]["speculative_tokens"] = 4
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(data))
    config = load_worker_config(argparse.Namespace(config=str(newer)), environ={})
    assert config.serving.max_batch == data["serving"]["max_batch"]
    data["schema_version"] = f"{major + 1}.0"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    with pytest.raises(
        ConfigError, match=f"schema_version {major + 1}.0 but this worker reads {SCHEMA_VERSION}"
    ):
        load_worker_config(argparse.Namespace(config=str(other)), environ={})


if __name__ == "__main__":  # regenerate one release's fixtures
    folder = FIXTURES / (sys.argv[1] if len(sys.argv) > 1 else SCHEMA_VERSION)
    folder.mkdir(parents=True, exist_ok=True)
    for example, text in rendered_configs().items():
        (folder / f"{example}.json").write_text(text + "\n")
