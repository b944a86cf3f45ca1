"""A child the cluster refuses for lack of room ends in the GrokDeployment's status (shortages.py).

The in-memory API answers a Service create as the kube-apiserver does when its ClusterIP range is
full (HTTP 500, "failed to allocate a serviceIP: range is full"); the pass must report it in the
status (phase Pending, reason ServiceIPsExhausted, the fix named), retry later, and go on once room
is free. A namespace's ResourceQuota without room (HTTP 403, "exceeded quota") is the same
kind of story (reason QuotaExceeded), not a refusal of the spec. Other errors stay errors.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_operator_reconcile import MemoryApi, body

from grok_operator import constants as c
from grok_operator.kube import ApiError
from grok_operator.reconcile import DeploymentMemory, Outcome, Reconciler
from grok_operator.shortages import cluster_shortage

FULL = '{"kind":"Status","message":"Internal error occurred: failed to allocate a serviceIP: range is full"}'


class RefusingServicesApi(MemoryApi):
    """Refuses every ClusterIP Service with `answer` while `full` is set (a full range by default)."""

    def __init__(self, answer: str = FULL, status: int = 500) -> None:
        super().__init__()
        self.full = True
        self.answer, self.status_code = answer, status

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        if self.full and obj["kind"] == "Service" and obj["spec"].get("clusterIP") != "None":
            raise ApiError(
                "PATCH", f"/api/v1/services/{obj['metadata']['name']}", self.status_code, self.answer
            )
        return super().apply(obj)


def _first_pass(api: RefusingServicesApi, memory: DeploymentMemory) -> tuple[Outcome, dict[str, Any]]:
    """A pass against the refusing API: it must end Pending; its outcome and Ready condition."""
    outcome = Reconciler(api).reconcile(body(api), memory, now=1.0, now_iso="2026-01-01T00:00:00Z")
    assert api.status["phase"] == c.Phase.PENDING
    ready = next(cond for cond in api.status["conditions"] if cond["type"] == "Ready")
    assert outcome.requeue_after is not None
    return outcome, ready


def test_a_full_service_range_shows_in_the_status_and_clears_when_room_is_free() -> None:
    api, memory = RefusingServicesApi(), DeploymentMemory()
    outcome, ready = _first_pass(api, memory)
    assert ready["reason"] == c.Reason.SERVICE_IPS_EXHAUSTED
    assert "no free Service ClusterIP" in ready["message"]
    assert "service-cluster-ip-range" in ready["message"]
    assert outcome.requeue_after is not None
    assert outcome.requeue_after > 0
    assert [reason for reason, _ in api.events] == [c.Reason.SERVICE_IPS_EXHAUSTED]
    # Unchanged: the next pass writes no status and no second Event.
    again = Reconciler(api).reconcile(body(api), memory, now=2.0, now_iso="2026-01-01T00:00:05Z")
    assert again.writes == 0
    api.full = False
    Reconciler(api).reconcile(body(api), memory, now=3.0, now_iso="2026-01-01T00:00:10Z")
    assert api.status["phase"] != c.Phase.PENDING
    assert ("Service", "chat") in api.objects


def test_other_refusals_stay_errors() -> None:
    api = RefusingServicesApi('{"message":"admission webhook denied"}', 500)
    with pytest.raises(ApiError):
        Reconciler(api).reconcile(body(api), DeploymentMemory(), now=1.0, now_iso="2026-01-01T00:00:00Z")
    assert cluster_shortage(ApiError("PATCH", "/x", 500, FULL), "ConfigMap", "x") is None


#: kube-apiserver's answer to a write a ResourceQuota has no room for (tests/integration/test_operator_quota.py).
OVER_QUOTA = json.dumps(
    {
        "kind": "Status",
        "status": "Failure",
        "reason": "Forbidden",
        "code": 403,
        "message": 'services "chat" is forbidden: exceeded quota: team, requested: services=1, '
        "used: services=0, limited: services=0",
    }
)


def test_a_full_quota_is_a_shortage_with_the_servers_words_not_a_refusal_of_the_spec() -> None:
    _, ready = _first_pass(RefusingServicesApi(OVER_QUOTA, 403), DeploymentMemory())
    assert ready["reason"] == c.Reason.QUOTA_EXCEEDED
    assert "exceeded quota: team, requested: services=1" in ready["message"]
    assert "raise that quota" in ready["message"]


def test_a_403_that_is_no_quota_stays_a_refusal() -> None:
    rbac = '{"kind":"Status","message":"services \\"chat\\" is forbidden: User \\"x\\" cannot patch"}'
    assert cluster_shortage(ApiError("PATCH", "/x", 403, rbac), "Service", "chat") is None
    assert cluster_shortage(ApiError("PATCH", "/x", 500, OVER_QUOTA), "Service", "chat") is None
