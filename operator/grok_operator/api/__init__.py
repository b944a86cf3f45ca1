"""The GrokDeployment API types (pydantic): the spec users write and the status the operator reports."""

from grok_operator.api.spec import (
    CheckpointSource,
    FailurePolicySpec,
    GrokDeploymentSpec,
    HostPathSource,
    MeshAxes,
    ModelDimensions,
    ModelSpec,
    PvcSource,
    RolloutSpec,
    ServingSpec,
    TopologySpec,
)
from grok_operator.api.status import Condition, GrokDeploymentStatus, GroupStatus, MemoryPlan

__all__ = [
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
    "PvcSource",
    "RolloutSpec",
    "ServingSpec",
    "TopologySpec",
]
