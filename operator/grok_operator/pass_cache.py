"""What a reconcile pass derives from the spec alone, computed once per distinct spec (memoized).

Data flow: the GrokDeployment's spec (as canonical JSON) and owner → `validated` → `capacity`
(the memory plan) → `template` (the pod template hash) → `children` (the rendered objects).
These change only when the spec (or the owner) does, yet every pass recomputed them; at 1,000
GrokDeployments that was most of a steady pass's CPU. The caches are bounded LRUs
(functools.lru_cache, thread-safe); their values are shared between the reconcile threads and
are only read or serialized, never changed.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from typing import Any

from grok_operator.capacity import MemoryPlan, plan_memory
from grok_operator.render import Children, Owner, render_children, template_hash
from grok_operator.validation import SpecProblem, ValidSpec, validate

#: Distinct (spec, owner) pairs kept; a fleet of N GrokDeployments needs about N.
ENTRIES = 4096


def spec_key(spec: Mapping[str, Any]) -> str:
    """The spec as canonical JSON: equal specs, equal keys."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


@functools.lru_cache(maxsize=ENTRIES)
def validated(key: str, name: str) -> ValidSpec | tuple[SpecProblem, ...]:
    result = validate(json.loads(key), name=name)
    return result if isinstance(result, ValidSpec) else tuple(result)


def _valid(key: str, name: str, tls_client_ca: bool = False) -> ValidSpec:
    """The validated spec, with what the pass read from the TLS Secrets (whether clients must
    present certificates, security_children.py)."""
    result = validated(key, name)
    if not isinstance(result, ValidSpec):
        raise ValueError(f"spec of {name} is not valid: {result}")
    return dataclasses.replace(result, tls_client_ca=True) if tls_client_ca else result


@functools.lru_cache(maxsize=ENTRIES)
def capacity(key: str, name: str) -> MemoryPlan:
    valid = _valid(key, name)
    spec = valid.spec
    return plan_memory(
        valid.model,
        quantization=spec.model.quantization,
        mesh=valid.mesh,
        max_batch=spec.serving.max_batch,
        max_seq_len=valid.max_seq_len,
        device_memory_bytes=valid.device_memory_bytes,
    )


@functools.lru_cache(maxsize=ENTRIES)
def template(owner: Owner, key: str, tls_client_ca: bool = False) -> str:
    return template_hash(owner, _valid(key, owner.name, tls_client_ca))


@functools.lru_cache(maxsize=ENTRIES)
def children(owner: Owner, key: str, keep: tuple[int, ...], tls_client_ca: bool = False) -> Children:
    return render_children(owner, _valid(key, owner.name, tls_client_ca), list(keep))
