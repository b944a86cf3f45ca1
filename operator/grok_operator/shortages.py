"""Child writes the cluster refuses for lack of a shared resource (pure): which, and what to say.

Data flow: the reconciler's apply of a child raises `ApiError` → `cluster_shortage()` → a
`Shortage` (reason and message for the status, how long to wait), or None for errors that are
not a shortage (those stay errors: logged, retried with back-off). A shortage is not the
GrokDeployment's fault and fixes itself when the cluster frees room, so it is reported in the
status (phase Pending) of every GrokDeployment it blocks, and retried at a steady pace.

Recognized, each as kube-apiserver 1.34 answers it (tests/integration/test_operator_service_range.py
and test_operator_quota.py get the answers from it):
- the Service ClusterIP range is full (500 "failed to allocate a serviceIP: range is full"); every
  GrokDeployment's client Service takes one ClusterIP;
- a ResourceQuota of the namespace has no room for the child (403 "... is forbidden: exceeded
  quota: NAME, requested: ..., used: ..., limited: ..."): not the spec's fault, and it passes
  when the quota is raised or room is freed, unlike the refusals in refusals.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from grok_operator.constants import Reason
from grok_operator.kube import ApiError
from grok_operator.refusals import refusal

#: How often a blocked GrokDeployment retries (the shortage ends when someone frees room).
RETRY_SECONDS = 30.0
_IP_RANGE_FULL = ("failed to allocate a serviceip", "range is full")
_QUOTA_EXCEEDED = "exceeded quota"


@dataclass(frozen=True)
class Shortage:
    reason: str
    message: str
    retry_after: float = RETRY_SECONDS


def cluster_shortage(err: ApiError, kind: str, name: str) -> Shortage | None:
    """The shortage behind a refused write of `kind` `name`, or None when it is no shortage."""
    text = str(err).lower()
    if kind == "Service" and any(marker in text for marker in _IP_RANGE_FULL):
        return Shortage(
            Reason.SERVICE_IPS_EXHAUSTED,
            f"the cluster has no free Service ClusterIP: creating Service {name} was refused "
            f"(HTTP {err.status}); delete unused Services or widen the service range "
            "(kube-apiserver --service-cluster-ip-range, or a ServiceCIDR object), or set "
            f"spec.serving.clientService: Headless (it takes no ClusterIP); retrying every {RETRY_SECONDS:.0f} s",
        )
    if err.status == 403 and _QUOTA_EXCEEDED in text:
        return Shortage(
            Reason.QUOTA_EXCEEDED,
            f"a ResourceQuota of the namespace has no room for {kind} {name}: "
            f"{refusal(err, kind, name).message}; raise that quota (kubectl describe resourcequota) "
            f"or delete what uses it; retrying every {RETRY_SECONDS:.0f} s",
        )
    return None
