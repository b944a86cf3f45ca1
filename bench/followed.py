"""One namespace's objects of one kind, each reduced to one value, kept by a LIST and then WATCHes.

Data flow: `relist()` LISTs the namespace through the operator's own client (`KubeApi.list_page`)
and records the list's resourceVersion; `follow(seconds)` opens a WATCH from that version for up
to `seconds` (`KubeApi.watch`) and applies each event to `values` (name -> `value(object)`; a
DELETED object drops out). An expired version (HTTP 410, or an ERROR event) re-lists. Objects
are the API's JSON as plain dicts, decoded the way the operator decodes its own watches, so that
following costs this process (which may also run the operator, or time the floor) no more than
the JSON does: the kubernetes client's typed models would cost several times that per event.

The fleet benchmark follows its GrokDeployments' phases with it and the floor its pods' readiness:
a WATCH costs the apiserver and this process one event per change, where polling would re-read
the whole namespace every second.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

Obj = dict[str, Any]


class Followed(Generic[T]):
    """`values`: each object's name -> `value(object)`, as of the last event applied."""

    def __init__(self, api: Any, kind: str, namespace: str, value: Callable[[Obj], T]) -> None:
        """`api`: a `grok_operator.kube.KubeApi`; `kind`: one it has a path for (Pod, GrokDeployment)."""
        from grok_operator.kube import collection_path

        self._api, self._path, self._value = api, collection_path(kind, namespace), value
        self.values: dict[str, T] = {}
        self.version = ""

    def relist(self) -> None:
        listing = self._api.list_page(self._path, {})
        self.version = str(listing["metadata"]["resourceVersion"])
        self.values = {str(item["metadata"]["name"]): self._value(item) for item in listing["items"]}

    def follow(self, seconds: float) -> None:
        """Apply the watch's events for up to `seconds` (re-listing when the version expired)."""
        from grok_operator.kube import ApiError

        query = {
            "watch": "true",
            "resourceVersion": self.version,
            "timeoutSeconds": str(max(1, int(seconds))),
        }
        try:
            stream = self._api.watch(self._path, query, read_timeout=seconds + 10)
        except ApiError as err:
            if err.status != 410:
                raise
            self.relist()
            return
        try:
            for event in stream:
                if not self._apply(event):
                    self.relist()
                    return
        finally:
            stream.close()

    def _apply(self, event: Obj) -> bool:
        """File one event; False when the watch reported an error (its version expired)."""
        if event["type"] == "ERROR":
            return False
        meta = event["object"]["metadata"]
        name, self.version = str(meta["name"]), str(meta["resourceVersion"])
        if event["type"] == "DELETED":
            self.values.pop(name, None)
        else:
            self.values[name] = self._value(event["object"])
        return True
