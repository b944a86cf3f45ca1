"""A namespace's ResourceQuota, as the real kube-apiserver enforces it, in a GrokDeployment's status.

A quota refuses two kinds of writes, and each must end in a status that names the quota and the
fix, then clear by itself once the quota is raised:
- a child the operator writes (here its Services, `services: "0"`): the apiserver answers the
  operator 403 "exceeded quota"; reason QuotaExceeded, phase Pending, a Warning Event, retried
  (not "fix the spec": the spec is fine);
- the pods, which the StatefulSet controller creates (here `requests.nvidia.com/gpu: "0"`): its
  FailedCreate words under reason PodCreationFailed.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_operator_support import Kube, one_host, wait_for

from grok_operator import constants as c

pytestmark = pytest.mark.cluster


def _quota(kube: Kube, hard: dict[str, str]) -> None:
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "team", "namespace": kube.namespace},
            "spec": {"hard": hard},
        }
    )


def _blocked(kube: Kube, hard: dict[str, str], name: str, reason: str) -> dict[str, Any]:
    """Set the namespace's quota to `hard`, create `name`, and wait for its Ready condition to say
    `reason`; that condition."""
    _quota(kube, hard)
    wait_for("the quota to be counted", lambda: (kube.get("resourcequota", "team") or {}).get("status"))
    kube.apply(one_host(name, kube.namespace))
    return kube.wait_reason(name, reason)


def test_a_quota_on_the_operators_own_children_is_reported_and_clears_when_raised(kube: Kube) -> None:
    ready = _blocked(kube, {"services": "0"}, "capped", c.Reason.QUOTA_EXCEEDED)
    assert kube.gd("capped")["status"]["phase"] == c.Phase.PENDING
    for words in ("exceeded quota: team", "services", "raise that quota"):
        assert words in ready["message"], ready["message"]
    assert "fix the spec" not in ready["message"]
    events = wait_for(
        "a Warning Event for the quota",
        lambda: [e for e in kube.events("capped") if e["reason"] == c.Reason.QUOTA_EXCEEDED],
    )
    assert events[0]["type"] == "Warning"

    _quota(kube, {"services": "10"})
    kube.wait_ready("capped", 1)


def test_a_gpu_quota_on_the_pods_is_reported_in_the_controllers_words(kube: Kube) -> None:
    ready = _blocked(kube, {"requests.nvidia.com/gpu": "0"}, "no-gpus", c.Reason.POD_CREATION_FAILED)
    assert "exceeded quota: team" in ready["message"], ready["message"]
    assert "nvidia.com/gpu" in ready["message"], ready["message"]

    _quota(kube, {"requests.nvidia.com/gpu": "8"})
    kube.wait_ready("no-gpus", 1, timeout=120)
