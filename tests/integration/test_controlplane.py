"""The local control plane behaves like a real cluster for what the operator relies on.

Scheduling GPU requests onto kwok GPU nodes, StatefulSets that make Ready pods, the scheduler's
Unschedulable verdict, garbage collection through ownerReferences, namespace deletion, the pinned
versions, and the CLI's detached up/down life cycle. All against real processes on loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from grok_devcluster.handle import ClusterHandle
from grok_devcluster.nodes import GPU_PRODUCT_LABEL, GPU_RESOURCE, KWOK_TOLERATION
from grok_devcluster.probes import wait_until
from grok_devcluster.process import is_running
from grok_devcluster.state import load_state
from grok_devcluster.versions import load_groups

pytestmark = pytest.mark.cluster


def _get(cluster: ClusterHandle, *args: str) -> Any:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def _gpu_pod_spec(gpus: int) -> dict[str, Any]:
    return {
        "tolerations": [KWOK_TOLERATION],
        "nodeSelector": {GPU_PRODUCT_LABEL: "NVIDIA-H100-80GB-HBM3"},
        "containers": [
            {
                "name": "worker",
                "image": "registry.invalid/grok-worker:test",
                "resources": {"limits": {GPU_RESOURCE: str(gpus)}, "requests": {GPU_RESOURCE: str(gpus)}},
            }
        ],
    }


def test_kubectl_lists_the_gpu_nodes_with_their_gpu_capacity(cluster: ClusterHandle) -> None:
    table = cluster.kubectl("get", "nodes", "-L", GPU_PRODUCT_LABEL).stdout
    nodes = {item["metadata"]["name"]: item for item in _get(cluster, "nodes")["items"]}
    gpu_nodes = cluster.gpu_nodes()
    assert len(gpu_nodes) >= 4
    for name in gpu_nodes:
        assert name in table
        node = nodes[name]
        assert node["status"]["capacity"][GPU_RESOURCE] == "8"
        assert node["status"]["allocatable"][GPU_RESOURCE] == "8"
        assert node["metadata"]["labels"]["nvidia.com/gpu.memory"] == "81559"
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready
        assert ready[0]["status"] == "True"
    assert "NVIDIA-H100-80GB-HBM3" in table


def test_statefulset_gpu_pods_are_scheduled_one_per_gpu_node_and_become_ready(
    cluster: ClusterHandle, namespace: str
) -> None:
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "grok", "namespace": namespace},
        "spec": {
            "serviceName": "grok",
            "replicas": 2,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "grok"}},
            "template": {"metadata": {"labels": {"app": "grok"}}, "spec": _gpu_pod_spec(gpus=8)},
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(statefulset))
    wait_until(
        lambda: _get(cluster, "statefulset", "grok", "-n", namespace)["status"].get("readyReplicas") == 2,
        60,
        "StatefulSet grok to have 2 Ready replicas",
        interval_s=0.5,
    )
    pods = _get(cluster, "pods", "-n", namespace, "-l", "app=grok")["items"]
    assert sorted(p["metadata"]["name"] for p in pods) == ["grok-0", "grok-1"]
    node_names = [p["spec"]["nodeName"] for p in pods]
    # Each pod asks for all 8 GPUs of a node, so the scheduler must put them on different nodes.
    assert len(set(node_names)) == 2
    assert set(node_names) <= set(cluster.gpu_nodes())
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        assert {c["type"]: c["status"] for c in pod["status"]["conditions"]}["Ready"] == "True"


def test_pod_asking_for_more_gpus_than_any_node_has_stays_unschedulable(
    cluster: ClusterHandle, namespace: str
) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "too-big", "namespace": namespace}}
    pod["spec"] = _gpu_pod_spec(gpus=16)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod))

    def scheduled_condition() -> dict[str, Any] | None:
        conditions = _get(cluster, "pod", "too-big", "-n", namespace)["status"].get("conditions", [])
        return next((c for c in conditions if c["type"] == "PodScheduled"), None)

    wait_until(lambda: scheduled_condition() is not None, 30, "the scheduler to judge pod too-big")
    condition = scheduled_condition()
    assert condition is not None
    assert condition["status"] == "False"
    assert condition["reason"] == "Unschedulable"
    assert f"Insufficient {GPU_RESOURCE}" in condition["message"]
    status = _get(cluster, "pod", "too-big", "-n", namespace)["status"]
    assert status["phase"] == "Pending"


def _configmap_names(core: k8s.CoreV1Api, namespace: str) -> set[str]:
    return {
        cm.metadata.name
        for cm in core.list_namespaced_config_map(namespace).items
        if cm.metadata and cm.metadata.name
    }


def test_deleting_an_owner_garbage_collects_its_dependents(cluster: ClusterHandle, namespace: str) -> None:
    core = k8s.CoreV1Api(cluster.api_client())
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}, "data": {"a": "1"}})  # type: ignore[arg-type]
    assert owner.metadata is not None
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    dependent = {"metadata": {"name": "dependent", "ownerReferences": [reference]}, "data": {"b": "2"}}
    core.create_namespaced_config_map(namespace, dependent)  # type: ignore[arg-type]
    assert {"owner", "dependent"} <= _configmap_names(core, namespace)

    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")

    wait_until(
        lambda: "dependent" not in _configmap_names(core, namespace),
        30,
        "the garbage collector to delete ConfigMap dependent",
        interval_s=0.2,
    )


def test_namespaces_get_a_default_service_account_and_finish_deleting(cluster: ClusterHandle) -> None:
    name = f"t-ns-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    wait_until(
        lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
        30,
        f"the default ServiceAccount in {name}",
    )
    cluster.kubectl("create", "configmap", "leftover", "-n", name, "--from-literal=k=v")
    cluster.kubectl("delete", "namespace", name, "--wait=true", "--timeout=60s")
    assert cluster.kubectl("get", "namespace", name, check=False).returncode != 0


def test_add_gpu_nodes_makes_ready_nodes_with_the_requested_gpus(cluster: ClusterHandle) -> None:
    prefix = f"extra-{uuid.uuid4().hex[:6]}"
    names = cluster.add_gpu_nodes(2, gpus=4, prefix=prefix)
    try:
        assert names == [f"{prefix}-0", f"{prefix}-1"]
        more = cluster.add_gpu_nodes(1, gpus=4, prefix=prefix)
        names += more
        assert more == [f"{prefix}-2"]
        for name in names:
            node = _get(cluster, "node", name)
            assert node["status"]["allocatable"][GPU_RESOURCE] == "4"
            assert name in cluster.gpu_nodes()
    finally:
        cluster.kubectl("delete", "node", *names, "--ignore-not-found")


def test_binaries_report_the_versions_pinned_in_versions_toml(cluster: ClusterHandle) -> None:
    groups = load_groups()
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["clientVersion"]["gitVersion"] == groups["kubernetes"].version
    if cluster.managed:
        assert version["serverVersion"]["gitVersion"] == groups["kubernetes"].version
    helm_version = subprocess.run(
        [cluster.helm_binary, "version", "--template", "{{.Version}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert helm_version == groups["helm"].version


@pytest.mark.slow
def test_cli_up_keeps_a_detached_cluster_that_down_stops_without_leftovers() -> None:
    name = f"clitest-{os.getpid()}"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "grok_devcluster.cli", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)

    up = cli("up", "--name", name, "--nodes", "1", "--gpus", "2")
    state = load_state(name)
    try:
        assert up.returncode == 0, up.stderr
        assert state is not None
        assert [p.name for p in state.processes] == [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
        ]
        kubeconfig = cli("kubeconfig", "--name", name).stdout.strip()
        assert kubeconfig == state.kubeconfig
        assert cli("status", "--name", name).returncode == 0
        # The processes outlived the `up` command: ask the cluster something through them.
        handle = ClusterHandle.from_kubeconfig(
            kubeconfig, kubectl_binary=state.kubectl, helm_binary=state.helm
        )
        try:
            node = k8s.CoreV1Api(handle.api_client()).read_node("gpu-node-0")
            assert node.status is not None
            assert node.status.capacity is not None
            assert node.status.capacity[GPU_RESOURCE] == "2"
        finally:
            handle.close()
        again = cli("up", "--name", name)
        assert again.returncode == 0
        assert "already running" in again.stdout
    finally:
        down = cli("down", "--name", name)
    assert down.returncode == 0, down.stderr
    assert not [p.name for p in state.processes if is_running(p)], "processes survived `down`"
    assert not Path(state.root).exists()
    assert load_state(name) is None
    assert cli("status", "--name", name).returncode == 1
