"""What the operator refuses, and how it says so, against the real control plane.

- A spec whose weights + KV cache do not fit the GPUs' memory: InsufficientDeviceMemory with the
  numbers, a Warning Event, and no pods.
- Pods asking for more GPUs than any node has: an Unschedulable condition carrying the scheduler's
  message (not "Loading").
- Invalid specs: refused by the apiserver's schema when it can tell, otherwise an InvalidSpec
  condition naming the field and the fix, with no hot loop (no writes while nothing changes).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from test_operator_support import Kube, manifest, small, wait_for

from grok_operator import constants as c
from grok_operator.runtime import OperatorThread

pytestmark = pytest.mark.cluster

TINY_DIMENSIONS = {
    "vocabSize": 512,
    "dModel": 64,
    "nLayers": 3,
    "nQHeads": 4,
    "nKvHeads": 2,
    "headDim": 16,
    "nExperts": 8,
    "expertsPerToken": 2,
    "ffnSize": 344,
    "maxSeqLen": 256,
}


def test_grok1_on_two_24gb_gpus_is_refused_with_the_numbers_and_no_pods(kube: Kube) -> None:
    kube.apply(
        manifest(
            "tight",
            kube.namespace,
            replicas=1,
            topology={"hostsPerReplica": 1, "gpusPerHost": 2, "gpuMemory": "24Gi"},
        )
    )
    ready = kube.wait_reason("tight", c.Reason.INSUFFICIENT_DEVICE_MEMORY)
    assert ready["status"] == "False"
    assert "24.0 GiB" in ready["message"], ready["message"]
    assert "weights" in ready["message"], ready["message"]
    status = kube.gd("tight")["status"]
    assert status["phase"] == "Infeasible"
    assert status["memoryPlan"]["fits"] is False
    assert status["memoryPlan"]["requiredBytesPerDevice"] > status["memoryPlan"]["deviceMemoryBytes"]
    degraded = kube.condition("tight", "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", c.Reason.INSUFFICIENT_DEVICE_MEMORY)
    events = wait_for(
        "a Warning Event",
        lambda: [e for e in kube.events("tight") if e["reason"] == c.Reason.INSUFFICIENT_DEVICE_MEMORY],
    )
    assert events[0]["type"] == "Warning"
    assert kube.items("statefulsets") == []
    assert kube.pods("tight") == []


def test_more_gpus_per_host_than_any_node_has_is_reported_as_unschedulable(kube: Kube) -> None:
    kube.apply(
        manifest("huge", kube.namespace, replicas=1, topology={"hostsPerReplica": 1, "gpusPerHost": 16})
    )
    ready = kube.wait_reason("huge", c.Reason.UNSCHEDULABLE)
    assert "nvidia.com/gpu" in ready["message"], ready["message"]
    assert "cannot be scheduled" in ready["message"]
    status = kube.gd("huge")["status"]
    assert status["phase"] == "Unschedulable"
    degraded = kube.condition("huge", "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", c.Reason.UNSCHEDULABLE)


@pytest.mark.parametrize(
    ("case", "spec", "expected"),
    [
        ("negative replicas", {"replicas": -1}, "spec.replicas"),
        ("zero GPUs per host", {"topology": {"gpusPerHost": 0}}, "spec.topology.gpusPerHost"),
        (
            "no checkpoint source",
            {"model": {"preset": "tiny", "checkpoint": {"path": "x"}}},
            "exactly one checkpoint source",
        ),
        (
            "a mesh that does not multiply to the devices",
            {"topology": {"hostsPerReplica": 2, "gpusPerHost": 1, "mesh": {"model": 4}}},
            "must equal hostsPerReplica",
        ),
        (
            "both a preset and dimensions",
            {
                "model": {
                    "preset": "tiny",
                    "dimensions": TINY_DIMENSIONS,
                    "checkpoint": {"hostPath": {"path": "/m"}},
                }
            },
            "exactly one of model.preset",
        ),
        (
            "an unknown quantization",
            {"model": {"preset": "tiny", "quantization": "int4", "checkpoint": {"hostPath": {"path": "/m"}}}},
            "spec.model.quantization",
        ),
        (
            "maxUnavailable and maxSurge both zero",
            {"rollout": {"maxUnavailable": 0, "maxSurge": 0}},
            "maxUnavailable + maxSurge",
        ),
    ],
)
def test_the_schema_refuses(kube: Kube, case: str, spec: dict[str, Any], expected: str) -> None:
    body = small("bad", kube.namespace, **spec)
    result = kube.cluster.kubectl("apply", "-f", "-", input=json.dumps(body), check=False)
    assert result.returncode != 0, f"{case} was accepted"
    assert expected in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("case", "spec", "field", "fix"),
    [
        (
            "an unknown preset",
            {"model": {"preset": "grok-9", "checkpoint": {"hostPath": {"path": "/m"}}}},
            "spec.model.preset",
            "grok-1",
        ),
        (
            "heads not divisible by the model axis",
            {"topology": {"hostsPerReplica": 1, "gpusPerHost": 3, "gpuMemory": "16Gi"}},
            "spec.topology.mesh.model",
            "use a model axis among 1, 2, 4",
        ),
        (
            "an object-store checkpoint",
            {"model": {"preset": "tiny", "checkpoint": {"uri": "s3://bucket/tiny"}}},
            "spec.model.checkpoint.uri",
            "checkpoint.pvc",
        ),
        (
            "an operator-owned env var",
            {"env": [{"name": "GROK_MESH", "value": "model=1"}]},
            "spec.env[0].name",
            "remove it",
        ),
    ],
)
def test_invalid_specs_are_reported_in_a_condition_without_a_hot_loop(
    kube: Kube, operator: OperatorThread, case: str, spec: dict[str, Any], field: str, fix: str
) -> None:
    kube.apply(small("bad", kube.namespace, **spec))
    ready = kube.wait_reason("bad", c.Reason.INVALID_SPEC)
    assert field in ready["message"], f"{case}: {ready['message']}"
    assert fix in ready["message"], f"{case}: {ready['message']}"
    assert kube.gd("bad")["status"]["phase"] == "Invalid"
    assert kube.items("statefulsets") == []
    version = kube.gd("bad")["metadata"]["resourceVersion"]
    writes = operator.state.api.writes_in(kube.namespace)
    time.sleep(2.5)  # more than one resync interval
    assert kube.gd("bad")["metadata"]["resourceVersion"] == version
    assert operator.state.api.writes_in(kube.namespace) == writes, (
        "the operator kept writing about an unchanged invalid spec"
    )
