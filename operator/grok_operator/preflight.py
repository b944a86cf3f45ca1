"""Check a parsed spec against what the apiserver demands of the children it renders (pure).

The CRD schema cannot say that a GrokDeployment name must also be a valid Service name, that the
worker's ports must differ, or what a core/v1 Toleration looks like (those fields are free-form
there). Without these checks the GrokDeployment is stored, and the apiserver then refuses its
StatefulSet or Service: the object would sit without a status. So they are checked up front.

Data flow: object name and `GrokDeploymentSpec` → `name_problems()` / `child_problems()` →
(field, message) pairs that validation.py turns into `SpecProblem`s of the InvalidSpec condition.
Whatever these checks miss and the apiserver still refuses is reported by refusals.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from grok_operator.api import GrokDeploymentSpec
from grok_worker.contract import DEFAULT_COORDINATOR_PORT, DEFAULT_HEALTH_PORT
from grok_worker.contract import DEFAULT_STEP_PORT as STEP_PORT

Problem = tuple[str, str]

#: Longest GrokDeployment name. Children are named <name>-g<index> (StatefulSet, headless Service,
#: index < the replicas maximum, so at most 5 more characters) and pods <name>-g<index>-<host>; the
#: controller-revision-hash label (<statefulset>-<10 characters>) must stay within 63 characters.
MAX_NAME_LENGTH = 40

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUANTITY = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$")
_SUFFIX = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_TOLERATION_KEYS = frozenset({"key", "operator", "value", "effect", "tolerationSeconds"})
_EFFECTS = ("", "NoSchedule", "PreferNoSchedule", "NoExecute")
_AFFINITY_KEYS = frozenset({"nodeAffinity", "podAffinity", "podAntiAffinity"})
_RESOURCE_KEYS = frozenset({"limits", "requests", "claims"})


def name_problems(name: str) -> list[Problem]:
    """The GrokDeployment name becomes the client Service's name: a DNS-1035 label, and short
    enough for every child name derived from it."""
    problems = []
    if len(name) > MAX_NAME_LENGTH:
        problems.append(
            (
                "metadata.name",
                f"{name!r} has {len(name)} characters; use at most {MAX_NAME_LENGTH} "
                "(pod and label names derived from it must fit in 63)",
            )
        )
    if name and not _DNS1035.match(name):
        problems.append(
            (
                "metadata.name",
                f"{name!r} cannot name the Services this GrokDeployment needs: use lower-case letters, "
                "digits and '-', starting with a letter and ending with a letter or digit (e.g. "
                f"{_suggest_name(name)!r}); recreate the object under that name",
            )
        )
    return problems


def _suggest_name(name: str) -> str:
    cleaned = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = f"grok-{cleaned}".rstrip("-")
    return cleaned[:MAX_NAME_LENGTH].rstrip("-")


def child_problems(spec: GrokDeploymentSpec) -> list[Problem]:
    """Every reason the apiserver would refuse the children of `spec`, as (field, message)."""
    problems: list[Problem] = []
    problems += port_problems(spec)
    problems += _toleration_problems(spec.tolerations)
    problems += _affinity_problems(spec.affinity)
    problems += _resource_problems(spec)
    problems += _node_selector_problems(spec.node_selector)
    problems += _reference_problems(spec)
    problems += _path_problems(spec)
    return problems


def worker_ports(spec: GrokDeploymentSpec) -> dict[str, int]:
    """Every port a worker pod listens on, by the spec field (or fixed role) that sets it."""
    ports = {
        "spec.serving.port": spec.serving.port,
        "spec.serving.metricsPort": spec.serving.metrics_port,
        "coordinator port (fixed)": DEFAULT_COORDINATOR_PORT,
        "step-broadcast port (fixed, coordinator + 1)": STEP_PORT,
        "health-probe port (fixed)": DEFAULT_HEALTH_PORT,
    }
    if spec.serving.http.enabled:
        ports["spec.serving.http.port"] = spec.serving.http.port
    return ports


def port_problems(spec: GrokDeploymentSpec) -> list[Problem]:
    """Two listeners on one port: the pod would not start (and the apiserver refuses the duplicate)."""
    problems = []
    seen: dict[int, str] = {}
    used = worker_ports(spec)
    free = next(p for p in range(8000, 65536) if p not in used.values())
    for field, port in used.items():
        other = seen.setdefault(port, field)
        if other == field:
            continue
        ours, theirs = (field, other) if field.startswith("spec.") else (other, field)
        problems.append(
            (
                ours,
                f"port {port} is also the {theirs}; every port of the worker must differ "
                f"(the coordinator, step and health ports {DEFAULT_COORDINATOR_PORT}, {STEP_PORT} and "
                f"{DEFAULT_HEALTH_PORT} are reserved); pick another, e.g. {free}",
            )
        )
    return problems


def _toleration_problems(tolerations: list[dict[str, Any]]) -> Iterator[Problem]:
    for index, toleration in enumerate(tolerations):
        field = f"spec.tolerations[{index}]"
        unknown = sorted(set(toleration) - _TOLERATION_KEYS)
        if unknown:
            yield field, f"unknown field(s) {unknown}; a Toleration has {sorted(_TOLERATION_KEYS)}"
        key, operator = toleration.get("key", ""), toleration.get("operator", "Equal")
        effect, value = toleration.get("effect", ""), toleration.get("value", "")
        if operator not in ("Exists", "Equal", ""):
            yield f"{field}.operator", f"{operator!r} is not an operator; use Exists or Equal"
        if effect not in _EFFECTS:
            yield (
                f"{field}.effect",
                f"{effect!r} is not a taint effect; use one of {[e for e in _EFFECTS if e]}",
            )
        if key and (not isinstance(key, str) or not _qualified(key)):
            yield f"{field}.key", f"{key!r} is not a valid taint key (a label key such as nvidia.com/gpu)"
        if not key and operator != "Exists":
            yield f"{field}.operator", "a toleration without a key must use operator Exists"
        if operator == "Exists" and value:
            yield f"{field}.value", "operator Exists takes no value; remove value or use operator Equal"
        if not isinstance(value, str):
            yield f"{field}.value", f"{value!r} must be a string (quote it)"
        seconds = toleration.get("tolerationSeconds")
        if seconds is not None and (not isinstance(seconds, int) or isinstance(seconds, bool)):
            yield f"{field}.tolerationSeconds", f"{seconds!r} must be a whole number of seconds"
        elif seconds is not None and effect != "NoExecute":
            yield f"{field}.tolerationSeconds", "only a NoExecute toleration takes tolerationSeconds"


def _affinity_problems(affinity: Mapping[str, Any]) -> Iterator[Problem]:
    for key, value in affinity.items():
        if key not in _AFFINITY_KEYS:
            yield f"spec.affinity.{key}", f"unknown field; an Affinity has {sorted(_AFFINITY_KEYS)}"
        elif not isinstance(value, Mapping):
            yield f"spec.affinity.{key}", f"must be an object, got {type(value).__name__}"


def _qualified(key: str) -> bool:
    """A Kubernetes qualified name: [prefix/]name, prefix a DNS subdomain, name at most 63."""
    prefix, _, name = key.rpartition("/")
    if prefix and not _dns_subdomain(prefix):
        return False
    return len(name) <= 63 and bool(_QUALIFIED_NAME.match(name))


def _dns_subdomain(text: str) -> bool:
    return 0 < len(text) <= 253 and all(_DNS1123_LABEL.match(part) for part in text.split("."))


def parse_quantity(text: object) -> Decimal | None:
    """The value of a Kubernetes quantity ("500m", "2Gi", "1e3"), None when it is not one."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        return None
    raw = str(text).strip()
    match = _QUANTITY.match(raw)
    if match is None:
        return None
    number, suffix = match.group(1), match.group(3) or ""
    try:
        if suffix[:1] in ("e", "E"):
            return Decimal(number) * Decimal(10) ** int(suffix[1:])
        return Decimal(number) * _SUFFIX[suffix]
    except InvalidOperation:
        return None


def _resource_problems(spec: GrokDeploymentSpec) -> Iterator[Problem]:
    gpu = spec.topology.gpu_resource_name
    prefix, _, _ = gpu.rpartition("/")
    # An extended resource (<vendor-domain>/<name>), or a native one such as cpu for CPU-only runs.
    if not _qualified(gpu) or prefix.endswith("kubernetes.io"):
        yield (
            "spec.topology.gpuResourceName",
            f"{gpu!r} is not a resource name; use <vendor-domain>/<name>, e.g. nvidia.com/gpu (or cpu)",
        )
    resources = spec.resources
    for key in sorted(set(resources) - _RESOURCE_KEYS):
        yield f"spec.resources.{key}", f"unknown field; use {sorted(_RESOURCE_KEYS)}"
    parsed: dict[str, dict[str, Decimal]] = {}
    for section in ("requests", "limits"):
        values = resources.get(section) or {}
        if not isinstance(values, Mapping):
            yield f"spec.resources.{section}", "must map resource names to quantities, e.g. {cpu: '2'}"
            continue
        parsed[section] = {}
        for name, raw in values.items():
            field = f"spec.resources.{section}.{name}"
            if not _qualified(str(name)):
                yield field, f"{name!r} is not a resource name (e.g. cpu, memory, example.com/foo)"
            amount = parse_quantity(raw)
            if amount is None or amount < 0:
                yield field, f"{raw!r} is not a quantity; write e.g. 500m, 2, 16Gi"
            else:
                parsed[section][str(name)] = amount
    for name, request in parsed.get("requests", {}).items():
        limit = parsed.get("limits", {}).get(name)
        if limit is not None and request > limit:
            yield (
                f"spec.resources.requests.{name}",
                f"request {resources['requests'][name]!r} exceeds the limit {resources['limits'][name]!r}; "
                "raise the limit or lower the request",
            )


def _node_selector_problems(selector: Mapping[str, str]) -> Iterator[Problem]:
    for key, value in selector.items():
        if not _qualified(key):
            yield f"spec.nodeSelector.{key}", "not a valid label key (e.g. nvidia.com/gpu.product)"
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            yield (
                f"spec.nodeSelector.{key}",
                f"{value!r} is not a valid label value (at most 63 of [-A-Za-z0-9_.])",
            )


def _reference_problems(spec: GrokDeploymentSpec) -> Iterator[Problem]:
    """Names of other objects the pods refer to must be valid object names."""
    references = {
        "spec.serviceAccountName": spec.service_account_name,
        "spec.priorityClassName": spec.priority_class_name,
        "spec.schedulerName": spec.scheduler_name,
    }
    if spec.model.checkpoint.pvc is not None:
        references["spec.model.checkpoint.pvc.claimName"] = spec.model.checkpoint.pvc.claim_name
    for field, value in references.items():
        if value and not _dns_subdomain(value):
            yield field, f"{value!r} is not a valid object name (lower-case letters, digits, '-' and '.')"


def _path_problems(spec: GrokDeploymentSpec) -> Iterator[Problem]:
    checkpoint = spec.model.checkpoint
    for field, path in (
        ("spec.model.checkpoint.path", checkpoint.path),
        ("spec.model.tokenizerPath", spec.model.tokenizer_path),
    ):
        if path.startswith("/"):
            yield (
                field,
                (
                    f"{path!r} is absolute; give a path relative to the checkpoint volume's root "
                    f"(e.g. {path.lstrip('/').rsplit('/', 1)[-1] or 'ckpt'!r})"
                ),
            )
        elif ".." in path.split("/"):
            yield field, f"{path!r} leaves the checkpoint volume ('..'); give a path inside it"
    if checkpoint.host_path is not None and ".." in checkpoint.host_path.path.split("/"):
        yield "spec.model.checkpoint.hostPath.path", "must not contain '..'; give the directory's own path"
