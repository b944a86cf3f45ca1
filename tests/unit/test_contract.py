"""The operator<->worker contract: the environment and config file a worker pod is given."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from grok_worker.contract import Env, GroupEnv, MeshSpec, ServingSection, WorkerConfig


def test_a_single_process_needs_no_environment_at_all() -> None:
    env = GroupEnv.from_environ({})
    assert env.num_processes == 1
    assert env.is_leader
    assert not env.multi_host


def test_a_follower_reads_its_index_group_size_coordinator_and_mesh() -> None:
    env = GroupEnv.from_environ(
        {
            Env.NUM_PROCESSES: "2",
            Env.PROCESS_ID: "1",
            Env.COORDINATOR_ADDRESS: "g0-0.g0:8476",
            Env.MESH: "data=1,expert=2,model=8",
            Env.LOCAL_DEVICE_COUNT: "8",
        }
    )
    assert (env.num_processes, env.process_id, env.local_device_count) == (2, 1, 8)
    assert not env.is_leader
    assert env.mesh == MeshSpec(data=1, expert=2, model=8)
    assert env.mesh.size == 16


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({Env.NUM_PROCESSES: "two"}, Env.NUM_PROCESSES),
        ({Env.NUM_PROCESSES: "2", Env.PROCESS_ID: "2", Env.COORDINATOR_ADDRESS: "x:1"}, Env.PROCESS_ID),
        ({Env.NUM_PROCESSES: "2", Env.PROCESS_ID: "1"}, Env.COORDINATOR_ADDRESS),
        ({Env.MESH: "model:8"}, Env.MESH),
        ({Env.MESH: "tensor=8"}, "unknown axis"),
    ],
    ids=[
        "a group size that is not a number names the variable",
        "a host index beyond the group names the variable",
        "a multi-host group without a coordinator names the variable",
        "a mesh that is not axis=size names the variable",
        "a mesh axis that does not exist is named",
    ],
)
def test_a_bad_environment_is_refused_with_the_variable_named(environ: dict[str, str], names: str) -> None:
    with pytest.raises(ValueError, match=names):
        GroupEnv.from_environ(environ)


def test_the_config_round_trips_through_the_file_the_operator_writes(tmp_path: Path) -> None:
    config = WorkerConfig(
        mesh=MeshSpec(model=4), serving=ServingSection(max_batch=4, prefill_buckets=(16, 64))
    )
    path = tmp_path / "worker.json"
    path.write_text(config.model_dump_json())
    assert WorkerConfig.from_file(path) == config
    assert MeshSpec.from_env(config.mesh.to_env()) == config.mesh


def test_an_unknown_config_field_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "worker.json"
    path.write_text('{"serving": {"maxbatch": 4}}')
    with pytest.raises(ValidationError, match="maxbatch"):
        WorkerConfig.from_file(path)
