"""Reading a worker config written by another release's operator (the contract's versioning).

Data flow: the config JSON (ConfigMap key `CONFIG_FILE_NAME`) → `accepted_fields()` → a dict the
strict `WorkerConfig` (extra="forbid") validates → the worker. `read_config()` does both steps.

Rule (`WorkerConfig.schema_version`, "MAJOR.MINOR"; a config without one is "1.0", the first
release's): an operator may add fields only with a new minor, and a worker reads
- the same major and the same or an older minor strictly: an unknown field is a typo, refused;
- the same major and a newer minor: fields this worker does not know are dropped, each logged once
  (the newer operator's features it cannot use are off; everything it knows is still validated);
- another major: refused, with a message naming both versions and the fix.
So an operator upgrade that adds a field never crash-loops the previous release's worker images.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import types
import typing
from typing import Any

from pydantic import BaseModel

from grok_worker.contract import SCHEMA_VERSION, WorkerConfig

logger = logging.getLogger(__name__)

#: The version of a config that carries none (written before the contract was versioned).
UNVERSIONED = "1.0"
_logged: set[str] = set()


class ContractVersionError(ValueError):
    """The config's schema version is not one this worker can read."""


def parse_version(text: object) -> tuple[int, int]:
    parts = str(text).split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ContractVersionError(
            f"schema_version {text!r} must look like MAJOR.MINOR, e.g. {SCHEMA_VERSION!r}"
        )
    return int(parts[0]), int(parts[1])


def _structured(annotation: Any) -> type | None:
    """The pydantic model or dataclass inside a field's annotation (`X`, `X | None`), if any."""
    if isinstance(annotation, type) and (
        issubclass(annotation, BaseModel) or dataclasses.is_dataclass(annotation)
    ):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        for arg in typing.get_args(annotation):
            if (found := _structured(arg)) is not None:
                return found
    return None


def _fields_of(cls: type) -> dict[str, Any]:
    """Field name -> annotation of a pydantic model or a dataclass: the keys a config may hold there."""
    if issubclass(cls, BaseModel):
        return {name: info.annotation for name, info in cls.model_fields.items()}
    return typing.get_type_hints(cls)


def _drop_unknown(cls: type, data: dict[str, Any], path: str, dropped: list[str]) -> dict[str, Any]:
    known = _fields_of(cls)
    kept: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            dropped.append(f"{path}{key}")
            continue
        sub = _structured(known[key])
        if sub is not None and isinstance(value, dict):
            value = _drop_unknown(sub, value, f"{path}{key}.", dropped)
        kept[key] = value
    return kept


def accepted_fields(data: dict[str, Any]) -> dict[str, Any]:
    """`data` (a parsed config) as this worker may validate it; raises ContractVersionError."""
    theirs_text = str(data.get("schema_version", UNVERSIONED))
    theirs, ours = parse_version(theirs_text), parse_version(SCHEMA_VERSION)
    if theirs[0] != ours[0]:
        raise ContractVersionError(
            f"the worker config has schema_version {theirs_text} but this worker reads {SCHEMA_VERSION} "
            f"(major {ours[0]} only): run a worker image of the operator's release (major {theirs[0]})"
        )
    if theirs[1] <= ours[1]:
        return data
    dropped: list[str] = []
    kept = _drop_unknown(WorkerConfig, data, "", dropped)
    for path in dropped:
        if path not in _logged:
            _logged.add(path)
            logger.warning(
                "ignoring config field %s: written for schema %s, this worker reads %s",
                path,
                theirs_text,
                SCHEMA_VERSION,
            )
    return kept


def read_config(text: str) -> WorkerConfig:
    """Parse and validate a config JSON under the versioning rule above."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ContractVersionError("the worker config must be a JSON object")
    return WorkerConfig.model_validate(accepted_fields(data))
