"""Names, labels, owner references and hashes shared by every renderer (pure).

Every child of a GrokDeployment carries the same base labels (so the operator can list them with
one selector), a controller owner reference (so the garbage collector removes them with their
owner), and a render hash annotation (so the I/O layer writes a child only when it changed).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from grok_operator import constants as c

Obj = dict[str, Any]


@dataclass(frozen=True)
class Owner:
    """The GrokDeployment the children belong to."""

    name: str
    namespace: str
    uid: str
    #: The GrokDeployment's own labels (render/kueue.py reads Kueue's queue and priority labels).
    labels: tuple[tuple[str, str], ...] = ()


def group_name(name: str, index: int) -> str:
    """Name of replica group `index`: its StatefulSet and its headless Service."""
    return f"{name}-g{index}"


def config_map_name(name: str) -> str:
    return f"{name}-worker-config"


def client_service_name(name: str) -> str:
    """The Service clients use; it selects the leaders (host 0) of every group."""
    return name


def base_labels(name: str) -> dict[str, str]:
    """Labels on every child and every pod of a GrokDeployment."""
    return {
        c.LABEL_NAME: c.APP_NAME,
        c.LABEL_INSTANCE: name,
        c.LABEL_MANAGED_BY: c.MANAGED_BY,
        c.LABEL_DEPLOYMENT: name,
    }


def group_labels(name: str, index: int) -> dict[str, str]:
    return {
        **base_labels(name),
        c.LABEL_GROUP: group_name(name, index),
        c.LABEL_GROUP_INDEX: str(index),
    }


def group_selector(name: str, index: int) -> dict[str, str]:
    """Labels that select the pods of one replica group (the StatefulSet's immutable selector)."""
    return {c.LABEL_DEPLOYMENT: name, c.LABEL_GROUP: group_name(name, index)}


def leader_selector(name: str) -> dict[str, str]:
    """Labels that select the leader pod (host 0) of every group of `name`."""
    return {c.LABEL_DEPLOYMENT: name, c.LABEL_POD_INDEX: "0"}


def selector_string(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def owner_reference(owner: Owner) -> Obj:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(owner: Owner, name: str, labels: dict[str, str]) -> Obj:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": dict(labels),
        "ownerReferences": [owner_reference(owner)],
    }


def stable_hash(value: Any, length: int = 16) -> str:
    """A short hex digest of a JSON-able value, independent of dict order."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def with_render_hash(obj: Obj) -> Obj:
    """A copy of `obj` annotated with the hash of everything else in it."""
    out = copy.deepcopy(obj)
    annotations = out["metadata"].setdefault("annotations", {})
    annotations.pop(c.ANNOTATION_RENDER_HASH, None)
    annotations[c.ANNOTATION_RENDER_HASH] = stable_hash(out)
    return out


def render_hash(obj: Mapping[str, Any]) -> str:
    """The render hash a child carries ("" when it has none)."""
    annotations = obj.get("metadata", {}).get("annotations") or {}
    return str(annotations.get(c.ANNOTATION_RENDER_HASH, ""))
