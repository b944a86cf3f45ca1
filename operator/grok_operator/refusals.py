"""Tell a permanent refusal by the apiserver from a passing failure, and an object that is gone.

Data flow: a write of the reconcile fails with `ApiError` → `classify()`:
  - the GrokDeployment (or its namespace, or its CRD) no longer exists → `ObjectGoneError`: the
    per-object loop ends (handlers.py), nothing is re-created for an object that is gone;
  - the apiserver refuses a child as invalid or forbidden (4xx, or its 500 for duplicate list
    keys) → `ChildRefusedError`, carrying the server's message and the field: the reconcile writes it to
    the status (condition RefusedByApiServer) and an Event, and retries only when the spec changes
    or after `REFUSAL_RETRY_SECONDS` (no hot loop);
  - anything else (5xx, timeouts, conflicts) is left to the loop's exponential back-off.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from grok_operator.kube import ApiError

#: How long a refused spec waits before the operator tries its children again unchanged (a
#: dependency such as an admission webhook may have changed in the meantime; a full quota is a
#: shortage, shortages.py, retried sooner).
REFUSAL_RETRY_SECONDS = 300.0
#: Statuses that will not change on retry: bad request, forbidden, method/size/type refused, invalid.
PERMANENT_STATUSES = frozenset({400, 403, 405, 413, 415, 422})

#: Where a field of a rendered child comes from in the GrokDeployment spec (longest prefix wins).
_SPEC_FIELDS = (
    ("spec.template.spec.tolerations", "spec.tolerations"),
    ("spec.template.spec.affinity", "spec.affinity"),
    ("spec.template.spec.nodeSelector", "spec.nodeSelector"),
    ("spec.template.spec.priorityClassName", "spec.priorityClassName"),
    ("spec.template.spec.serviceAccountName", "spec.serviceAccountName"),
    ("spec.template.spec.schedulerName", "spec.schedulerName"),
    ("spec.template.spec.containers[0].resources", "spec.resources / spec.topology.gpuResourceName"),
    ("spec.template.spec.containers[0].env", "spec.env"),
    ("spec.template.spec.containers[0].image", "spec.image"),
    ("spec.template.spec.containers[0].ports", "spec.serving (ports)"),
    ("spec.template.spec.volumes", "spec.model.checkpoint"),
    ("spec.ports", "spec.serving (ports)"),
    ("metadata.name", "metadata.name"),
)


class ObjectGoneError(Exception):
    """The GrokDeployment, its namespace or its kind no longer exists: stop working on it."""


@dataclass(frozen=True)
class Refusal:
    """The apiserver's refusal of one child, as the status reports it."""

    kind: str
    name: str
    status: int
    message: str
    #: The child's field the server named ("" when it named none) and the spec field it comes from.
    child_field: str = ""
    spec_field: str = ""

    @property
    def field(self) -> str:
        return self.spec_field or (f"{self.kind} {self.child_field}" if self.child_field else "spec")

    def describe(self) -> str:
        where = f" (from {self.spec_field})" if self.spec_field else ""
        return (
            f"the apiserver refuses {self.kind} {self.name} (HTTP {self.status}){where}: {self.message}; "
            "fix the spec (it is retried on every change)"
        )


class ChildRefusedError(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.describe())
        self.refusal = refusal


def is_gone(err: ApiError) -> bool:
    """A write failed because its target's namespace is gone or going (or the object itself)."""
    if err.status == 404:
        return True
    return err.status == 403 and "being terminated" in err.body


def is_permanent(err: ApiError) -> bool:
    if err.status in PERMANENT_STATUSES:
        return not is_gone(err)
    # Server-side apply answers a list with two items of one key (two ports 9090) with a 500.
    return err.status == 500 and "duplicate entries for key" in err.body


def refusal(err: ApiError, kind: str, name: str) -> Refusal:
    """The server's own message and field out of its Status document."""
    try:
        document = json.loads(err.body)
    except ValueError:
        document = {}
    if not isinstance(document, dict):
        document = {}
    message = str(document.get("message") or err.body[:500] or f"HTTP {err.status}")
    causes = (document.get("details") or {}).get("causes") or []
    child_field = next((str(c.get("field")) for c in causes if isinstance(c, dict) and c.get("field")), "")
    return Refusal(
        kind=kind,
        name=name,
        status=err.status,
        message=message,
        child_field=child_field,
        spec_field=spec_field(kind, child_field),
    )


def spec_field(kind: str, child_field: str) -> str:
    """The GrokDeployment field a child's field is rendered from ("" when unknown)."""
    if not child_field:
        return ""
    for prefix, field in _SPEC_FIELDS:
        if child_field.startswith(prefix) and (
            kind == "StatefulSet" or not prefix.startswith("spec.template")
        ):
            return field
    return ""
