"""One namespace's objects of one kind, each reduced to one value, kept by a LIST and then WATCHes.

Data flow: `relist()` LISTs the namespace and records the list's resourceVersion; `follow(seconds)`
opens a WATCH from that version for up to `seconds` and applies each event to `values` (name ->
`value(object)`; a DELETED object drops out). An expired version (HTTP 410, or an ERROR event)
re-lists. The objects are what the kubernetes client's list function returns: the core API's
typed models (a Pod) or plain JSON dicts (a GrokDeployment, through the custom objects API);
`value` reads whichever its kind comes as.

The fleet benchmark follows its GrokDeployments' phases with it and the floor its pods' readiness:
a WATCH costs the apiserver and this process (which may also run the operator) one event per
change, where polling would re-read the whole namespace every second.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def _name_and_version(obj: Any) -> tuple[str, str]:
    if isinstance(obj, dict):
        meta = obj["metadata"]
        return str(meta["name"]), str(meta["resourceVersion"])
    return str(obj.metadata.name), str(obj.metadata.resource_version)


def _items_and_version(listing: Any) -> tuple[list[Any], str]:
    if isinstance(listing, dict):
        return list(listing["items"]), str(listing["metadata"]["resourceVersion"])
    return list(listing.items), str(listing.metadata.resource_version)


class Followed(Generic[T]):
    """`values`: each object's name -> `value(object)`, as of the last event applied."""

    def __init__(self, list_fn: Callable[..., Any], *args: str, value: Callable[[Any], T]) -> None:
        self._list_fn, self._args, self._value = list_fn, args, value
        self.values: dict[str, T] = {}
        self.version = ""

    def relist(self) -> None:
        items, self.version = _items_and_version(self._list_fn(*self._args))
        self.values = {_name_and_version(item)[0]: self._value(item) for item in items}

    def follow(self, seconds: float) -> None:
        """Apply the watch's events for up to `seconds` (re-listing when the version expired)."""
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
            self._list_fn,
            *self._args,
            resource_version=self.version,
            timeout_seconds=max(1, int(seconds)),
            _request_timeout=seconds + 10,
        )
        try:
            for event in stream:
                if event["type"] == "ERROR":
                    self.relist()
                    return
                name, self.version = _name_and_version(event["object"])
                if event["type"] == "DELETED":
                    self.values.pop(name, None)
                else:
                    self.values[name] = self._value(event["object"])
        except ApiException as err:
            if err.status != 410:
                raise
            self.relist()
