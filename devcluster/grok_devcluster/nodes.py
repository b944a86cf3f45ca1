"""Fake GPU nodes that kwok keeps Ready: pure manifests, plus one function that creates them.

Each node carries the kwok annotation (so the run's kwok manages it), a NoSchedule taint (so only
pods that tolerate it land there), the labels NVIDIA's GPU feature discovery puts on a real node,
and `nvidia.com/gpu` in capacity and allocatable, so the scheduler accounts for GPU requests
exactly as on a cluster with the device plugin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .components import KWOK_NODE_ANNOTATION, KWOK_NODE_ANNOTATION_VALUE

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
KWOK_TAINT = {"key": KWOK_NODE_ANNOTATION, "value": KWOK_NODE_ANNOTATION_VALUE, "effect": "NoSchedule"}
# What a pod needs to land on a fake node.
KWOK_TOLERATION = {
    "key": KWOK_NODE_ANNOTATION,
    "operator": "Equal",
    "value": KWOK_NODE_ANNOTATION_VALUE,
    "effect": "NoSchedule",
}


@dataclass(frozen=True)
class GpuNodeSpec:
    """Shape of one fake GPU node (defaults: an 8x H100 80GB server)."""

    gpus: int = 8
    gpu_product: str = "NVIDIA-H100-80GB-HBM3"
    gpu_memory_mib: int = 81559
    cpu: str = "192"
    memory: str = "2000Gi"
    pods: int = 110

    def __post_init__(self) -> None:
        if self.gpus < 0:
            raise ValueError(f"GpuNodeSpec.gpus must be >= 0, got {self.gpus}")
        if self.pods < 1:
            raise ValueError(f"GpuNodeSpec.pods must be >= 1, got {self.pods}")


def node_names(prefix: str, start: int, count: int) -> list[str]:
    """`count` node names `<prefix>-<i>` starting at index `start`."""
    if count < 0:
        raise ValueError(f"node count must be >= 0, got {count}")
    return [f"{prefix}-{index}" for index in range(start, start + count)]


def render_gpu_node(name: str, spec: GpuNodeSpec) -> dict[str, Any]:
    """The Node object for one fake GPU node, status included (Nodes accept status on create)."""
    resources = {
        "cpu": spec.cpu,
        "memory": spec.memory,
        "pods": str(spec.pods),
        "ephemeral-storage": "1Ti",
        GPU_RESOURCE: str(spec.gpus),
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {
                KWOK_NODE_ANNOTATION: KWOK_NODE_ANNOTATION_VALUE,
                "node.alpha.kubernetes.io/ttl": "0",
            },
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/gpu": "",
                GPU_PRODUCT_LABEL: spec.gpu_product,
                GPU_MEMORY_LABEL: str(spec.gpu_memory_mib),
                GPU_COUNT_LABEL: str(spec.gpus),
                "nvidia.com/gpu.present": "true",
            },
        },
        "spec": {"taints": [dict(KWOK_TAINT)]},
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
                "containerRuntimeVersion": "kwok",
                "osImage": "kwok",
                "kernelVersion": "kwok",
                "bootID": "",
                "machineID": "",
                "systemUUID": "",
            },
        },
    }
