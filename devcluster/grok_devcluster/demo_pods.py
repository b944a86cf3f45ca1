"""The demo's steps on real pods: the images, the chart's operator pod, the worker pod, its Service.

Data flow: `images_for_node()` builds (or finds cached) the operator and worker images ->
`start_real_cluster()` starts the local control plane with a real node and imports them ->
`install_chart_pods()` runs `helm upgrade --install` with the operator Deployment at 1 replica on
the local operator image and waits for it -> `grokdeployment_manifest()` turns
examples/tiny-cpu.yaml into the demo's object (the local worker image, the checkpoint folder as the
hostPath) -> `service_target()` reads the GrokDeployment's Service's ClusterIP and waits until
kube-proxy routes it from this machine to the worker pod (`wait_routed`: the pod's Ready reaches
kube-proxy through the EndpointSlice a moment after it reaches the GrokDeployment's status).
demo.py prints each step and runs `grok generate`.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from .handle import ClusterHandle
from .images import BuiltImage, build_images
from .nodeconfig import NODE_LABEL

#: Commands a user runs to look at the pods; the demo prints their output.
LOOK_COMMANDS = (("get", "pods", "-A", "-o", "wide"),)


def images_for_node() -> dict[str, BuiltImage]:
    """The operator and worker images, built from docker/ or found in the cache."""
    return build_images(progress=sys.stdout)


def start_real_cluster(cluster_name: str, images: dict[str, BuiltImage]) -> tuple[ClusterHandle, float]:
    """The local control plane with a real node (and one fake GPU node), reused if one is running;
    returns it and the seconds the image import took."""
    from .cluster import ClusterOptions, find_cluster, start_cluster, stop_cluster

    cluster = find_cluster(cluster_name)
    if cluster is not None and cluster.state.real_node is not None and all(cluster.running().values()):
        print(f"    reusing the running local control plane {cluster_name!r} and its real node", flush=True)
    else:
        stop_cluster(cluster_name)
        print(
            "    starting the local control plane and a real node (kubelet, containerd, kube-proxy, CoreDNS)"
        )
        options = ClusterOptions(name=cluster_name, gpu_nodes=1, node_prefix="demo-node", real_node=True)
        cluster = start_cluster(options, progress=sys.stdout)
    seconds = cluster.load_images(list(images.values()))
    return cluster.handle, seconds


def chart_values(operator: BuiltImage) -> list[str]:
    """`helm --set` arguments that run the chart's operator on the locally built image."""
    repository, tag = operator.ref.rsplit(":", 1)
    return [
        "--set",
        f"image.repository={repository}",
        "--set",
        f"image.tag={tag}",
        "--set",
        "image.pullPolicy=Never",
        "--set",
        "replicaCount=1",
    ]


def install_chart_pods(
    handle: ClusterHandle, chart: Path, release: str, namespace: str, operator: BuiltImage
) -> None:
    """helm upgrade --install, waiting until the operator pod is Ready (its /healthz probe passes)."""
    handle.helm(
        "upgrade",
        "--install",
        release,
        str(chart),
        "--namespace",
        namespace,
        "--create-namespace",
        *chart_values(operator),
        "--wait",
        "--timeout",
        "3m",
    )


def grokdeployment_manifest(example: Path, worker: BuiltImage, model_dir: Path) -> dict[str, Any]:
    """The example GrokDeployment on the local worker image, reading the checkpoint from `model_dir`."""
    document: dict[str, Any] = next(
        d for d in yaml.safe_load_all(example.read_text()) if d and d.get("kind") == "GrokDeployment"
    )
    spec = document["spec"]
    spec["image"] = worker.ref
    spec["imagePullPolicy"] = "Never"
    spec["model"]["checkpoint"] = {"hostPath": {"path": str(model_dir.resolve())}}
    # On the real node, not on a fake one that only pretends to run it.
    spec.pop("tolerations", None)
    spec["nodeSelector"] = {NODE_LABEL: "true"}
    return document


def service_target(
    handle: ClusterHandle, namespace: str, deployment: dict[str, Any], port_name: str = "grpc"
) -> str:
    """ClusterIP:port of the GrokDeployment's client Service (status.endpoint names it) for the
    Service port `port_name` ("grpc", or "http" for the OpenAI-compatible API)."""
    endpoint = (deployment.get("status") or {}).get("endpoint", "")
    name = endpoint.split(".")[0] if endpoint else deployment["metadata"]["name"]
    service = json.loads(handle.kubectl("get", "service", name, "-n", namespace, "-o", "json").stdout)
    port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == port_name)
    target = f"{service['spec']['clusterIP']}:{port}"
    wait_routed(target)
    return target


def wait_routed(target: str, timeout_s: float = 60) -> None:
    """Return once a TCP connection to `target` (a ClusterIP:port) is accepted. Until kube-proxy
    has a ready endpoint for the Service its rules reject the connection (connection refused)."""
    host, port = target.rsplit(":", 1)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
            return
        except OSError as error:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{target} accepted no connection for {timeout_s:.0f} s after the GrokDeployment was Ready: "
                    f"{error}; check kube-proxy's log and the Service's EndpointSlice"
                ) from error
            time.sleep(0.25)
