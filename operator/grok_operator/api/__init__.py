"""The GrokDeployment API types (pydantic): the spec users write and the status the operator reports."""

from grok_operator.api.spec import (
    AuthSpec,
    CheckpointSource,
    FailurePolicySpec,
    GrokDeploymentSpec,
    HostPathSource,
    MeshAxes,
    ModelSpec,
    NetworkPeer,
    NetworkPolicySpec,
    PodSecuritySpec,
    PvcSource,
    RolloutSpec,
    ServingSpec,
    TlsSpec,
    TopologySpec,
    api_field_name,
)
from grok_operator.api.status import Condition, GrokDeploymentStatus, GroupStatus, MemoryPlan

__all__ = [
    "AuthSpec",
    "CheckpointSource",
    "Condition",
    "FailurePolicySpec",
    "GrokDeploymentSpec",
    "GrokDeploymentStatus",
    "GroupStatus",
    "HostPathSource",
    "MemoryPlan",
    "MeshAxes",
    "ModelSpec",
    "NetworkPeer",
    "NetworkPolicySpec",
    "PodSecuritySpec",
    "PvcSource",
    "RolloutSpec",
    "ServingSpec",
    "TlsSpec",
    "TopologySpec",
    "api_field_name",
]
