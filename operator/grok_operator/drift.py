"""Find hand edits of a child (pure): the fields the operator renders whose live value differs.

The render hash annotation only says what the operator last wrote; `kubectl scale sts`, a changed
image or an emptied ConfigMap leave it as it was. So the rendered child is compared with the live
one, on the rendered fields only (the apiserver's defaults and other writers' extra fields are not
the operator's business, except in maps it owns whole: a Service's selector, a ConfigMap's
data): a dict matches when every rendered key matches, a list when it has as
many items and each matches, a resource quantity when it has the same value ("1000m" == "1").

Data flow: rendered child + live child → `drifted()` → the differing paths; the reconcile re-applies
the child, posts a DriftCorrected Event, and remembers the child's version after its write
(`version()`), so a value the apiserver normalises in a way this comparison does not know cannot
make it write again and again: only a change by someone else (a new version) is drift.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grok_operator.preflight import parse_quantity

#: Keys whose values are quantities, compared by value.
_QUANTITY_PARENTS = frozenset({"requests", "limits"})
#: Maps the operator owns whole (atomic in server-side apply, or all of a ConfigMap's data): a key
#: someone added is drift too, and the next apply removes it.
_WHOLE_MAPS = frozenset({"selector", "data"})


def drifted(desired: Mapping[str, Any], live: Mapping[str, Any]) -> list[str]:
    """The paths under which `live` differs from what `desired` sets (empty: no drift)."""
    out: list[str] = []
    _compare(desired, live, "", out, quantity=False)
    return out


def _compare(want: Any, have: Any, path: str, out: list[str], *, quantity: bool, whole: bool = False) -> None:
    if isinstance(want, Mapping):
        if not isinstance(have, Mapping):
            out.append(path or ".")
            return
        if whole:
            out.extend(f"{path}.{key}" for key in have if key not in want)
        for key, value in want.items():
            sub = f"{path}.{key}" if path else str(key)
            if key not in have:
                if value not in (None, "", [], {}):
                    out.append(sub)
                continue
            _compare(
                value,
                have[key],
                sub,
                out,
                quantity=key in _QUANTITY_PARENTS or quantity,
                whole=key in _WHOLE_MAPS,
            )
    elif isinstance(want, list):
        if not isinstance(have, list) or len(have) != len(want):
            out.append(path)
            return
        for index, (a, b) in enumerate(zip(want, have, strict=True)):
            _compare(a, b, f"{path}[{index}]", out, quantity=quantity)
    elif quantity and parse_quantity(want) is not None:
        if parse_quantity(want) != parse_quantity(have):
            out.append(path)
    elif want != have:
        out.append(path)


def version(kind: str, obj: Mapping[str, Any]) -> str:
    """What changes when someone edits the object's spec or data: a StatefulSet's generation (its
    controller's status updates do not bump it), else the resourceVersion."""
    meta = obj.get("metadata") or {}
    if kind == "StatefulSet" and meta.get("generation"):
        return f"g{meta['generation']}"
    return f"r{meta.get('resourceVersion', '')}"
