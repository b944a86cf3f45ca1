"""The GrokDeployment API types (pydantic): the spec users write and the status the operator reports."""

from grok_operator.api.spec import (
    AuthSpec,
    CheckpointSource,
    FailurePolicySpec,
    GrokDeploymentSpec,
    HostPathSource,
    MeshAxes,
    ModelDimensions,
    ModelSpec,
    NetworkPeer,
    NetworkPolicySpec,
    PodSecuritySpec,
    PvcSource,
    RolloutSpec,
    ServingSpec,
    TlsSpec,
    TopologySpec,
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
    "ModelDimensions",
    "ModelSpec",
    "NetworkPeer",
    "NetworkPolicySpec",
    "PodSecuritySpec",
    "PvcSource",
    "RolloutSpec",
    "ServingSpec",
    "TlsSpec",
    "TopologySpec",
]
