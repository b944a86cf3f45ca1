"""Compare the installed GrokDeployment CRD with the one this operator ships, and say what differs.

Helm installs the chart's crds/ folder on the first `helm install` and never upgrades it
(docs/chart.md), so after `helm upgrade` the operator may run against an older CRD. The apiserver
then stores only the fields the installed schema has: a field this operator added vanishes from
every spec a user applies and from every status the operator writes, without an error anywhere.
This module makes that visible.

Data flow: the CRD as the operator's watch delivers it (handlers.py, `crd_changed`) and
`build_crd()` → `compare()` → a `CrdSkew` (field paths only one side has, whether the served
version, validation, subresources, printer columns or names differ) → `CrdCheck.observe()` logs it
once per CRD generation: a warning naming the fields and the command that installs this operator's
CRD, then a line when a later generation matches. Descriptions are not compared (a stale
description only makes `kubectl explain` outdated).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from grok_operator import constants as c
from grok_operator.crd import build_crd

#: How to install this operator's CRD over an older one. `--force-conflicts`: Helm created the CRD,
#: so its fields belong to Helm's field manager, and a plain server-side apply is refused.
FIX = (
    "kubectl apply --server-side --force-conflicts -f charts/grok-operator/crds/ (from this "
    "operator's chart), or: grok-operator crd | kubectl apply --server-side --force-conflicts -f -"
)


@dataclass(frozen=True)
class CrdSkew:
    """How the installed CRD differs from this operator's, for the version this operator serves."""

    #: Field paths this operator's schema has and the installed one lacks (the apiserver drops them).
    missing: tuple[str, ...] = ()
    #: Field paths the installed schema has and this operator does not know.
    unknown: tuple[str, ...] = ()
    #: The installed CRD does not serve this operator's version at all.
    unserved: bool = False
    #: Validation, subresources, printer columns or names differ (beyond the fields above).
    other: bool = False

    def __bool__(self) -> bool:
        return bool(self.missing or self.unknown or self.unserved or self.other)

    def describe(self) -> str:
        """One sentence per difference."""
        parts = []
        if self.unserved:
            parts.append(f"It does not serve version {c.VERSION}.")
        if self.missing:
            parts.append(
                "Fields only this operator's CRD has (the apiserver drops them from specs and from "
                f"the status this operator writes): {', '.join(self.missing)}."
            )
        if self.unknown:
            parts.append(f"Fields only the installed CRD has: {', '.join(self.unknown)}.")
        if self.other:
            parts.append("Its validation, subresources, printer columns or names differ.")
        return " ".join(parts)

    def advice(self) -> str:
        """What to do: install this operator's CRD, unless the installed one only adds fields
        (a newer release's, left behind by a rollback of the operator)."""
        if self.unknown and not (self.missing or self.unserved or self.other):
            return (
                "It looks newer than this operator: run the operator release that ships it, or, to "
                f"stay on this release, install this operator's CRD: {FIX}"
            )
        return f"Install this operator's CRD: {FIX}"


def compare(installed: Mapping[str, Any], ours: Mapping[str, Any]) -> CrdSkew:
    """How `installed` (a CRD as stored) differs from `ours` (`build_crd()`)."""
    mine, theirs = _version(ours), _version(installed)
    if mine is None:
        raise ValueError(f"this operator's CRD has no version {c.VERSION}")
    if theirs is None or not theirs.get("served", False):
        return CrdSkew(unserved=True)
    mine_fields, their_fields = set(_fields(_schema(mine))), set(_fields(_schema(theirs)))
    same_rest = _without_descriptions(mine) == _without_descriptions(theirs) and (
        ours["spec"].get("names") == (installed.get("spec") or {}).get("names")
    )
    return CrdSkew(
        missing=tuple(sorted(mine_fields - their_fields)),
        unknown=tuple(sorted(their_fields - mine_fields)),
        other=not same_rest and mine_fields == their_fields,
    )


def _version(crd: Mapping[str, Any]) -> Mapping[str, Any] | None:
    versions = (crd.get("spec") or {}).get("versions") or []
    return next((v for v in versions if v.get("name") == c.VERSION), None)


def _schema(version: Mapping[str, Any]) -> Mapping[str, Any]:
    return ((version.get("schema") or {}).get("openAPIV3Schema")) or {}


def _fields(schema: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Every field path of a structural schema: `spec.serving.port`, `spec.tolerations[].key`,
    `<map>.*.<field>` inside the object values of a map."""
    for name, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}.{name}" if prefix else name
        yield path
        yield from _fields(sub, path)
        if isinstance(sub.get("items"), Mapping):
            yield from _fields(sub["items"], f"{path}[]")
        if isinstance(sub.get("additionalProperties"), Mapping):
            yield from _fields(sub["additionalProperties"], f"{path}.*")


def _without_descriptions(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {k: _without_descriptions(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_without_descriptions(v) for v in node]
    return node


class CrdCheck:
    """Checks each new generation of the installed CRD against this operator's (loop-owned)."""

    def __init__(self, ours: Mapping[str, Any] | None = None) -> None:
        self._ours = ours if ours is not None else build_crd()
        self._generation: int | None = None
        self._skewed = False

    def observe(
        self, installed: Mapping[str, Any], logger: logging.Logger | logging.LoggerAdapter[Any]
    ) -> None:
        """Log how `installed` differs from this operator's CRD, once per generation; and that it
        matches again, once, after a generation that did not."""
        generation = int((installed.get("metadata") or {}).get("generation") or 0)
        if generation == self._generation:
            return
        self._generation = generation
        skew = compare(installed, self._ours)
        if skew:
            logger.warning(
                f"the installed CRD {c.CRD_NAME} (generation {generation}) is not the one this "
                f"operator ships; Helm never upgrades a CRD. {skew.describe()} {skew.advice()}"
            )
        elif self._skewed:
            logger.info(
                f"the installed CRD {c.CRD_NAME} (generation {generation}) now matches this operator's"
            )
        self._skewed = bool(skew)
