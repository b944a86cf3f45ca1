"""The benchmarks' follower (bench/followed.py): a LIST, then WATCH events applied in order, and a
re-LIST when the watch's version expired; the API is replaced by a recording fake."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from bench.followed import Followed
from grok_operator.kube import ApiError

Obj = dict[str, Any]


def pod(name: str, version: str, ready: bool) -> Obj:
    status = "True" if ready else "False"
    return {
        "metadata": {"name": name, "resourceVersion": version},
        "status": {"conditions": [{"type": "Ready", "status": status}]},
    }


class Stream:
    def __init__(self, events: list[Obj]) -> None:
        self.events, self.closed = events, False

    def __iter__(self) -> Iterator[Obj]:
        return iter(self.events)

    def close(self) -> None:
        self.closed = True


class FakeApi:
    def __init__(self, listings: list[list[Obj]], watches: list[list[Obj] | ApiError]) -> None:
        self.listings, self.watches = listings, watches
        self.queries: list[tuple[str, Mapping[str, str]]] = []
        self.streams: list[Stream] = []

    def list_page(self, path: str, query: Mapping[str, str]) -> Obj:
        self.queries.append((path, query))
        items = self.listings.pop(0)
        return {"metadata": {"resourceVersion": str(10 * (len(self.queries)))}, "items": items}

    def watch(self, path: str, query: Mapping[str, str], read_timeout: float) -> Stream:
        self.queries.append((path, query))
        events = self.watches.pop(0)
        if isinstance(events, ApiError):
            raise events
        self.streams.append(Stream(events))
        return self.streams[-1]


def ready(obj: Obj) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in obj["status"]["conditions"])


def test_events_apply_in_order_and_the_next_watch_starts_from_the_last_version() -> None:
    api = FakeApi(
        [[pod("a", "5", False), pod("b", "6", False)]],
        [
            [
                {"type": "MODIFIED", "object": pod("a", "11", True)},
                {"type": "ADDED", "object": pod("c", "12", False)},
                {"type": "DELETED", "object": pod("b", "13", False)},
            ],
            [],
        ],
    )
    followed = Followed(api, "Pod", "ns", value=ready)
    followed.relist()
    assert followed.values == {"a": False, "b": False}
    followed.follow(1.0)
    assert followed.values == {"a": True, "c": False}
    followed.follow(1.0)
    assert [q[0] for q in api.queries] == ["/api/v1/namespaces/ns/pods"] * 3
    assert api.queries[1][1]["resourceVersion"] == "10"  # the LIST's version
    assert api.queries[2][1]["resourceVersion"] == "13"  # the last event's version
    assert all(stream.closed for stream in api.streams)


def test_an_expired_version_relists_whether_refused_or_reported_as_an_error_event() -> None:
    gone = ApiError("WATCH", "/api/v1/namespaces/ns/pods", 410, "too old")
    api = FakeApi(
        [[pod("a", "5", False)], [pod("a", "30", True)], [pod("a", "40", True), pod("b", "41", True)]],
        [gone, [{"type": "ERROR", "object": {"code": 410}}]],
    )
    followed = Followed(api, "Pod", "ns", value=ready)
    followed.relist()
    followed.follow(1.0)
    assert followed.values == {"a": True}
    followed.follow(1.0)
    assert followed.values == {"a": True, "b": True}
    assert followed.version == "50"  # the fake version of the API's fifth request, the third LIST


def test_the_fleet_reads_each_objects_creation_to_ready_from_its_timestamps() -> None:
    from bench.operator_fleet import Seen, seen

    def gd(ready: str | None) -> Obj:
        conditions = [{"type": "Progressing", "status": "True", "lastTransitionTime": "2026-12-02T07:00:03Z"}]
        if ready:
            conditions.append(
                {"type": "Ready", "status": ready, "lastTransitionTime": "2026-12-02T07:01:41Z"}
            )
        return {
            "metadata": {"creationTimestamp": "2026-12-02T07:00:01Z"},
            "status": {"phase": "Ready" if ready == "True" else "Progressing", "conditions": conditions},
        }

    assert seen(gd("True")) == Seen("Ready", 100.0)
    assert seen(gd("False")) == Seen("Progressing", None)
    assert seen(gd(None)) == Seen("Progressing", None)
    assert seen({"metadata": {"creationTimestamp": "2026-12-02T07:00:01Z"}}) == Seen(None, None)
