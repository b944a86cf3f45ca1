"""The README's demo, end to end, plus its pure helpers.

The slow tests run `python -m grok_devcluster.demo up` exactly as `make demo` does (a fresh local
control plane of its own, the chart, the operator, a tiny checkpoint, the worker, `grok generate`),
then `down`, and check that every step happened and that nothing is left running. A second one
runs it against an existing cluster (--kubeconfig), the path users with their own cluster take.

The fast tests check how the demo stands in for a pod: the environment and config the worker gets
from the StatefulSet and ConfigMap the operator rendered, and the operator's argv taken from the
chart's Deployment.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from grok_devcluster.components import SERVICE_CLUSTER_IP_RANGE
from grok_devcluster.demo import (
    DemoError,
    field_value,
    operator_argv,
    runs_program,
    stop_process,
    worker_launch,
)
from grok_worker.contract import CONFIG_FILE_NAME, Env, SecuritySection, WorkerConfig

STEPS = [f"[{i}/8]" for i in range(1, 9)]


def run_demo(command: str, state_dir: Path, *extra: str, env: dict[str, str] | None = None) -> str:
    argv = [sys.executable, "-m", "grok_devcluster.demo", command, "--state-dir", str(state_dir), *extra]
    environ = {k: v for k, v in (env or os.environ).items() if k != "KUBECONFIG"}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900, env=environ, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def assert_demo_ran(output: str, state: dict[str, Any]) -> None:
    for marker in STEPS:
        assert marker in output, f"step {marker} missing:\n{output}"
    assert "phase=Ready ready=1/1" in output
    assert "worker is SERVING" in output
    assert "[length, 24 tokens]" in output, output
    assert "openai: model 'tiny', finish_reason 'length'" in output, output
    assert set(state["pids"]) == {"operator", "worker"}
    assert all(alive(pid) for pid in state["pids"].values())


@pytest.mark.cluster
@pytest.mark.slow
def test_make_demo_runs_every_step_on_its_own_cluster_and_down_cleans_up(tmp_path: Path) -> None:
    state_dir = tmp_path / "demo"
    name = f"demo-e2e-{os.getpid()}"
    state: dict[str, Any] = {"pids": {}}
    try:
        output = run_demo("up", state_dir, "--cluster-name", name, "--mode", "host")
        state = json.loads((state_dir / "state.json").read_text())
        assert_demo_ran(output, state)
        assert state["cluster_started_here"] is True
        assert "starting the local control plane" in output
    finally:
        down = run_demo("down", state_dir)
    assert f"stopped the local control plane {name!r}" in down
    assert not state_dir.exists()
    assert not any(alive(pid) for pid in state["pids"].values())


@pytest.mark.cluster
@pytest.mark.slow
def test_the_demo_on_an_existing_cluster_leaves_it_as_it_was(cluster: Any, tmp_path: Path) -> None:
    state_dir = tmp_path / "demo"
    before = cluster.kubectl("get", "namespaces", "-o", "name").stdout.split()
    state: dict[str, Any] = {"pids": {}}
    try:
        output = run_demo("up", state_dir, "--kubeconfig", cluster.kubeconfig)
        state = json.loads((state_dir / "state.json").read_text())
        assert_demo_ran(output, state)
        assert state["cluster_started_here"] is False
        assert "using your cluster" in output
    finally:
        down = run_demo("down", state_dir)
    assert "deleted the GrokDeployments" in down
    assert cluster.helm("status", "grok-operator", "-n", "grok-system", check=False).returncode != 0
    out = cluster.kubectl("get", "grokdeployments", "-n", "grok-demo", "-o", "json", check=False).stdout
    assert not out or json.loads(out)["items"] == []
    assert not any(alive(pid) for pid in state["pids"].values())
    cluster.kubectl("delete", "namespace", "grok-system", "--ignore-not-found", "--wait=false", check=False)
    after = cluster.kubectl("get", "namespaces", "-o", "name").stdout.split()
    assert set(after) - set(before) <= {"namespace/grok-demo", "namespace/grok-system"}  # terminating


@pytest.mark.realnode
@pytest.mark.slow
def test_make_demo_on_real_pods_serves_through_the_service_and_down_restores_the_machine(
    tmp_path: Path,
) -> None:
    from grok_devcluster.hoststate import HostSnapshot
    from grok_devcluster.realnode import check_real_node

    reason = check_real_node()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must run the demo on real pods: {reason}", pytrace=False)
        pytest.skip(reason)
    state_dir = tmp_path / "demo"
    name = f"demo-rn-{os.getpid()}"
    before = HostSnapshot.take()
    try:
        output = run_demo("up", state_dir, "--cluster-name", name, "--mode", "pods")
        state = json.loads((state_dir / "state.json").read_text())
    finally:
        down = run_demo("down", state_dir)
    for marker in STEPS:
        assert marker in output, f"step {marker} missing:\n{output}"
    assert state["mode"] == "pods"
    assert state["pids"] == {}
    assert "phase=Ready ready=1/1" in output
    assert "$ kubectl get pods -n grok-system -o wide" in output
    assert "$ kubectl logs -n grok-demo tiny-g0-0" in output
    host = state["worker_target"].rsplit(":", 1)[0]  # the Service's ClusterIP
    assert ipaddress.ip_address(host) in ipaddress.ip_network(SERVICE_CLUSTER_IP_RANGE), host
    assert "[length, 24 tokens]" in output, output
    assert f"stopped the local control plane {name!r}" in down
    left = before.compare()
    assert not left, "the machine differs after `demo down`:\n" + "\n".join(left)


# --- fast: how the demo stands in for a pod ---------------------------------------------------


def statefulset(volumes: list[dict[str, Any]], mounts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": "tiny-g0", "namespace": "demo"},
        "spec": {
            "template": {
                "metadata": {"labels": {"serving.grok.dev/group": "tiny-g0"}},
                "spec": {
                    "containers": [
                        {
                            "name": "worker",
                            "command": ["grok-worker", "serve"],
                            "env": [
                                {"name": Env.NUM_PROCESSES, "value": "2"},
                                {"name": Env.COORDINATOR_ADDRESS, "value": "tiny-g0-0.tiny-g0.demo.svc:8476"},
                                {
                                    "name": Env.PROCESS_ID,
                                    "valueFrom": {
                                        "fieldRef": {
                                            "fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"
                                        }
                                    },
                                },
                                {
                                    "name": Env.POD_NAME,
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                },
                            ],
                            "volumeMounts": mounts,
                        }
                    ],
                    "volumes": volumes,
                },
            }
        },
    }


CONFIG = WorkerConfig.model_validate(
    {
        "model": {
            "preset": "tiny",
            "checkpoint_path": "/models/ckpt",
            "tokenizer_path": "/models/tokenizer.model",
        },
        "serving": {"port": 50051, "metrics_port": 9090, "http_port": 8000},
    }
)
VOLUMES = [
    {"name": "config", "configMap": {"name": "tiny-worker-config"}},
    {"name": "checkpoint", "hostPath": {"path": "/var/lib/grok/tiny"}},
]
MOUNTS = [
    {"name": "config", "mountPath": "/etc/grok"},
    {"name": "checkpoint", "mountPath": "/models", "readOnly": True},
]


def test_the_worker_gets_pod_zeros_env_with_the_checkpoint_mount_mapped_to_the_local_folder(
    tmp_path: Path,
) -> None:
    configmaps = {"tiny-worker-config": {CONFIG_FILE_NAME: CONFIG.model_dump_json()}}
    env, port = worker_launch(statefulset(VOLUMES, MOUNTS), configmaps, tmp_path / "model", tmp_path)
    assert env[Env.PROCESS_ID] == "0"
    assert env[Env.POD_NAME] == "tiny-g0-0"
    assert env[Env.NUM_PROCESSES] == "2"
    assert env[Env.COORDINATOR_ADDRESS].startswith("127.0.0.1:")
    written = WorkerConfig.from_file(env[Env.CONFIG_FILE])
    assert written.model.checkpoint_path == str(tmp_path / "model" / "ckpt")
    assert written.model.tokenizer_path == str(tmp_path / "model" / "tokenizer.model")
    assert written.serving.port == port != 50051
    assert written.serving.metrics_port not in (9090, port)
    assert written.serving.http_port not in (0, 8000, port)
    assert written.model.preset == "tiny"


def test_a_statefulset_without_a_checkpoint_volume_is_refused_by_name(tmp_path: Path) -> None:
    configmaps = {"tiny-worker-config": {CONFIG_FILE_NAME: CONFIG.model_dump_json()}}
    with pytest.raises(DemoError, match="tiny-g0 has no worker config or checkpoint volume"):
        worker_launch(statefulset(VOLUMES[:1], MOUNTS[:1]), configmaps, tmp_path, tmp_path)


def test_downward_api_fields_the_demo_cannot_fake_are_named() -> None:
    assert field_value("metadata.namespace", "p", "ns", {}) == "ns"
    assert field_value("status.podIP", "p", "ns", {}) == "127.0.0.1"
    with pytest.raises(DemoError, match=r"spec\.nodeName"):
        field_value("spec.nodeName", "p", "ns", {})


def test_secret_volumes_and_empty_dirs_become_local_folders_and_the_config_follows_them(
    tmp_path: Path,
) -> None:
    secured = CONFIG.model_copy(
        update={
            "security": SecuritySection(
                group_secret_file="/var/run/grok/group/step-key",
                tokens_dir="/var/run/grok/tokens",
                health_port=8081,
            )
        }
    )
    configmaps = {"tiny-worker-config": {CONFIG_FILE_NAME: secured.model_dump_json()}}
    volumes = [
        *VOLUMES,
        {
            "name": "group-key",
            "secret": {"secretName": "tiny-g0-step-key", "items": [{"key": "step-key", "path": "step-key"}]},
        },
        {"name": "tokens", "secret": {"secretName": "tiny-tokens"}},
        {"name": "home", "emptyDir": {}},
    ]
    mounts = [
        *MOUNTS,
        {"name": "group-key", "mountPath": "/var/run/grok/group", "readOnly": True},
        {"name": "tokens", "mountPath": "/var/run/grok/tokens", "readOnly": True},
        {"name": "home", "mountPath": "/home/grok"},
    ]
    sts = statefulset(volumes, mounts)
    sts["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "HOME", "value": "/home/grok"})
    secrets = {
        "tiny-g0-step-key": {"step-key": base64.b64encode(b"k" * 64).decode()},
        "tiny-tokens": {"alice": base64.b64encode(b"t0ken").decode()},
    }
    env, _ = worker_launch(sts, configmaps, tmp_path / "model", tmp_path, secrets)
    written = WorkerConfig.from_file(env[Env.CONFIG_FILE])
    assert Path(written.security.group_secret_file).read_bytes() == b"k" * 64
    assert (Path(written.security.tokens_dir) / "alice").read_bytes() == b"t0ken"
    assert written.security.health_port not in (0, 8081)
    assert Path(env["HOME"]).is_dir()
    assert env["HOME"].startswith(str(tmp_path))
    with pytest.raises(DemoError, match="Secret tiny-tokens"):
        worker_launch(
            sts, configmaps, tmp_path / "model", tmp_path, {"tiny-g0-step-key": secrets["tiny-g0-step-key"]}
        )


def test_the_operator_runs_with_the_deployments_args_and_its_listeners_on_loopback() -> None:
    deployment = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "command": ["grok-operator"],
                            "args": [
                                "run",
                                "--liveness=http://0.0.0.0:8080/healthz",
                                "--metrics-address=0.0.0.0:8081",
                                "--all-namespaces",
                            ],
                        }
                    ]
                }
            }
        }
    }
    argv = operator_argv(deployment, 4321, 4322)
    assert Path(argv[0]).name == "grok-operator"
    assert argv[1:] == [
        "run",
        "--all-namespaces",
        "--liveness=http://127.0.0.1:4321/healthz",
        "--metrics-address=127.0.0.1:4322",
    ]
    # A Deployment without the flags still gets loopback listeners (the flags' defaults bind every interface).
    deployment["spec"]["template"]["spec"]["containers"][0]["args"] = ["run", "--all-namespaces"]
    assert operator_argv(deployment, 1, 2)[-2:] == [
        "--liveness=http://127.0.0.1:1/healthz",
        "--metrics-address=127.0.0.1:2",
    ]
    deployment["spec"]["template"]["spec"]["containers"][0]["command"] = ["sleep"]
    with pytest.raises(DemoError, match="does not run grok-operator"):
        operator_argv(deployment, 1)


def test_down_signals_a_recorded_pid_only_while_it_still_runs_the_demos_program() -> None:
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while not runs_program(proc.pid, "sleep"):  # until the child has exec'd
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not runs_program(proc.pid, "grok-worker")
        stop_process("worker", proc.pid)  # a reused pid: left alone
        assert proc.poll() is None
        stop_process("sleep", proc.pid, grace_s=5)  # reaps it too: it is this process's child
        assert not runs_program(proc.pid, "sleep")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
