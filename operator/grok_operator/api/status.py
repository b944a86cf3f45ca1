"""The GrokDeployment status as pydantic models: its schema in the CRD and the shape the
reconciler writes.

Data flow: `status_report.py` computes a `GrokDeploymentStatus` from the observed children and the
capacity plan; the I/O layer compares its JSON form with the live `.status` and patches only when
they differ. `crd.py` generates the status schema from these models; kopf may add its own keys
next to them (the schema preserves unknown fields there).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from grok_operator.api.spec import ApiModel


class Condition(ApiModel):
    """One condition, following the Kubernetes API conventions."""

    type: str
    """Ready, Progressing or Degraded."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds."""
    reason: str
    """Machine-readable CamelCase reason, e.g. InsufficientDeviceMemory or Unschedulable."""
    message: str = ""
    """What happened and, when something is wrong, which field to change and how."""
    last_transition_time: str = ""
    """When status last changed (RFC 3339)."""
    observed_generation: int = 0
    """metadata.generation of the spec this condition was computed from."""


class MemoryPlan(ApiModel):
    """Memory needed on each GPU of a replica group, as the capacity planner computed it (bytes)."""

    devices_per_replica: int = 0
    """GPUs in one replica group (hostsPerReplica × gpusPerHost)."""
    device_memory_bytes: int = 0
    """Memory of one GPU, from topology.gpuMemory."""
    weights_bytes_per_device: int = 0
    """Model weights held by each GPU under the chosen mesh and quantization."""
    kv_cache_bytes_per_device: int = 0
    """KV cache (maxBatch × maxSequenceLength tokens) held by each GPU."""
    headroom_bytes_per_device: int = 0
    """Reserve for activations, compiled programs and the runtime."""
    required_bytes_per_device: int = 0
    """weights + KV cache + headroom."""
    fits: bool = False
    """Whether requiredBytesPerDevice fits in deviceMemoryBytes."""
    summary: str = ""
    """The same numbers in words."""


class GroupStatus(ApiModel):
    """State of one replica group (one StatefulSet)."""

    name: str
    """Name of the group's StatefulSet."""
    state: str
    """Ready, Loading, WaitingForAdmission (queued in Kueue), Unschedulable, Failed, Recreating or Absent."""
    ready_hosts: int = 0
    """Pods of the group that are Ready."""
    updated: bool = False
    """Whether every pod of the group runs the current pod template."""
    message: str = ""
    """Details when the group is not Ready."""


class GrokDeploymentStatus(ApiModel):
    """Observed state of a GrokDeployment, written by the operator."""

    observed_generation: int = 0
    """metadata.generation the operator last acted on."""
    replicas: int = 0
    """Replica groups that exist (including surge groups during a rollout)."""
    ready_replicas: int = 0
    """Replica groups whose every pod is Ready."""
    updated_replicas: int = 0
    """Replica groups running the current pod template."""
    phase: str = ""
    """One-word summary: Pending, Queued (waiting for Kueue to admit a group), Loading, Ready, Rolling, Degraded, Unschedulable, Infeasible, Invalid or ScaledToZero."""
    conditions: list[Condition] = Field(default_factory=list)
    """Ready, Progressing and Degraded, with reasons that tell invalid specs, missing capacity and crashes apart."""
    endpoint: str = ""
    """host:port of the client Service (leaders only), for gRPC clients in the cluster."""
    selector: str = ""
    """Label selector of the leader pods (for the scale subresource and HPA)."""
    memory_plan: MemoryPlan | None = None
    """Per-GPU memory plan of the current spec."""
    groups: list[GroupStatus] = Field(default_factory=list)
    """Per replica group details."""
