"""Fixtures of the real-node tests: one local cluster with a real kubelet node per session.

`real_cluster` (module) starts the control plane with a real node (grok_devcluster.realnode),
imports the operator and worker images built from docker/ (grok_devcluster.images), installs the
chart with the operator Deployment at 1 replica on the local image, and writes the tiny
checkpoint and tokenizer the worker pods mount through a hostPath volume. At the end it stops
everything and asserts the machine is as it was before (sysctls, nftables/iptables, host paths,
/run/netns, mounts, network links, cgroups).

The real node advertises `grok.dev/cpu-device` (an extended resource): each worker pod asks for
one of those instead of a whole core, so a 2-host group and a rolling update fit on a 2-core
machine next to the operator. Inside the pod it is one JAX CPU device, as with `cpu`.

Where a real node cannot run (not Linux, not root, `grok-devcluster setup-node` not run) the tests
skip, and FAIL instead when CI=true.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from grok_devcluster import demo_pods
from grok_devcluster.handle import ClusterHandle
from grok_devcluster.images import BuiltImage

REPO = Path(__file__).resolve().parents[2]
RELEASE = "grok-operator"
OPERATOR_NAMESPACE = "grok-system"
DEVICE_RESOURCE = "grok.dev/cpu-device"
DEVICES = 6


@dataclass
class RealCluster:
    handle: ClusterHandle
    images: dict[str, BuiltImage]
    model_dir: Path
    node: str
    containerd_socket: Path


def require_real_node() -> None:
    from grok_devcluster.realnode import check_real_node

    reason = check_real_node()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must run the real-node tests: {reason}", pytrace=False)
    pytest.skip(reason)


# Module scope: the node is gone before another module's test (the real-pod demo) starts its own;
# one real node fits a machine.
@pytest.fixture(scope="module")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    require_real_node()
    from grok_devcluster.binaries import ALL_BINARIES, ensure_binaries
    from grok_devcluster.cluster import ClusterError, ClusterOptions, start_cluster
    from grok_devcluster.demo import write_model
    from grok_devcluster.hoststate import HostSnapshot
    from grok_devcluster.images import build_images
    from grok_devcluster.realnode import NODE_BINARIES

    binaries = ensure_binaries((*ALL_BINARIES, *NODE_BINARIES))
    images = build_images()
    before = HostSnapshot.take()
    options = ClusterOptions(
        name=f"pytest-rn-{os.getpid()}", gpu_nodes=0, real_node=True, die_with_parent=True
    )
    try:
        devcluster = start_cluster(options, binaries={n: b.path for n, b in binaries.items()})
    except ClusterError as err:
        pytest.fail(str(err), pytrace=False)
    try:
        devcluster.load_images(list(images.values()))
        node = devcluster.state.real_node
        assert node is not None
        handle = devcluster.handle
        handle.kubectl(
            "patch",
            "node",
            node.node_name,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": {"capacity": {DEVICE_RESOURCE: str(DEVICES)}}}),
        )
        handle.helm(
            "install",
            RELEASE,
            str(REPO / "charts" / "grok-operator"),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--create-namespace",
            *demo_pods.chart_values(images["grok-operator"]),
            "--wait",
            "--timeout",
            "3m",
        )
        model_dir = tmp_path_factory.mktemp("rn-model")
        model_dir.chmod(0o755)  # the worker runs as uid 65532; the mount is this folder itself
        write_model(model_dir)
        yield RealCluster(handle, images, model_dir, node.node_name, node.layout.containerd_socket)
    finally:
        devcluster.stop()
    left = before.compare()
    assert not left, "the machine differs after `down`:\n" + "\n".join(left)


@pytest.fixture
def namespace(real_cluster: RealCluster) -> Iterator[str]:
    name = f"rn-{os.urandom(4).hex()}"
    real_cluster.handle.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        real_cluster.handle.kubectl("delete", "namespace", name, "--wait=false", check=False)


def grokdeployment(
    real: RealCluster, name: str, *, replicas: int = 1, hosts: int = 1, image: str | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "serving.grok.dev/v1alpha1",
        "kind": "GrokDeployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "image": image or real.images["grok-worker"].ref,
            "imagePullPolicy": "Never",
            "model": {
                "preset": "tiny",
                "quantization": "int8",
                "checkpoint": {"hostPath": {"path": str(real.model_dir)}},
                "tokenizerPath": "tokenizer.model",
            },
            "topology": {
                "hostsPerReplica": hosts,
                "gpusPerHost": 1,
                "gpuResourceName": DEVICE_RESOURCE,
                "gpuMemory": "4Gi",
            },
            "serving": {"maxBatch": 2, "maxSequenceLength": 32, "maxQueue": 4, "drainGraceSeconds": 1},
            "resources": {"requests": {"memory": "256Mi"}, "limits": {"memory": "2Gi"}},
        },
    }


def apply(real: RealCluster, namespace: str, manifest: dict[str, Any]) -> None:
    real.handle.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def get_json(real: RealCluster, *args: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(real.handle.kubectl("get", *args, "-o", "json").stdout)
    return out


def wait_ready(real: RealCluster, namespace: str, name: str, timeout_s: float = 420) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    found: dict[str, Any] = {}
    while time.monotonic() < deadline:
        found = get_json(real, "grokdeployment", name, "-n", namespace)
        status = found.get("status") or {}
        if status.get("phase") == "Ready" and status.get("readyReplicas") == found["spec"]["replicas"]:
            return found
        if status.get("phase") == "Infeasible":
            break
        time.sleep(1)
    pods = real.handle.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
    events = real.handle.kubectl("get", "events", "-n", namespace, check=False).stdout[-3000:]
    raise AssertionError(f"{name} not Ready within {timeout_s:.0f}s: {found.get('status')}\n{pods}\n{events}")


def pods(real: RealCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(
        real, "pods", "-n", namespace, "-l", f"serving.grok.dev/deployment={name}"
    )["items"]
    return sorted(items, key=lambda p: p["metadata"]["name"])


def service_target(real: RealCluster, namespace: str, name: str) -> str:
    """The client Service's ClusterIP:port, once kube-proxy routes it (as the demo reads it)."""
    deployment = get_json(real, "grokdeployment", name, "-n", namespace)
    return demo_pods.service_target(real.handle, namespace, deployment)


def generate(target: str, prompt: str = "The quick brown fox") -> str:
    """`grok generate` through the Service; returns its output (it fails the test on an error)."""
    grok = str(Path(sys.executable).parent / "grok")
    argv = [
        grok,
        "generate",
        "--target",
        target,
        "--max-tokens",
        "6",
        "--seed",
        "0",
        "--timeout",
        "60",
        prompt,
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr
