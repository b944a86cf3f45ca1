"""The operator's /metrics and /readyz (metrics.py, http_port.py), served on a real socket.

The exposition is parsed back with prometheus_client's own parser, so a series that Prometheus
could not read, a missing phase or a per-object label fails here. Readiness is driven from a
`Snapshot` of child watches (the integration tests drive it from real watches refused by RBAC).
"""

from __future__ import annotations

import argparse
import asyncio
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from grok_operator.cli import DEFAULT_METRICS_ADDRESS, _parser
from grok_operator.http_port import HttpPort, parse_address, readiness_problems
from grok_operator.metrics import PHASES, OperatorMetrics, PassResult, Snapshot, WatchHealth


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def exposition(metrics: OperatorMetrics) -> str:
    return generate_latest(metrics.registry).decode()


SNAPSHOT = Snapshot(
    phases={"Ready": 2, "Loading": 1, "": 1},
    writes={("apply", "StatefulSet"): 3, ("patch", "GrokDeployment/status"): 5},
    write_failures={("Service", "422"): 1},
    slots_waiting=7,
    watches=(
        WatchHealth("Pod", "*", listed=True),
        WatchHealth("Service", "*", listed=True, failure="HTTP 403: forbidden"),
        WatchHealth("ConfigMap", "*", listed=False),
    ),
)


def test_the_exposition_carries_the_snapshot_and_the_pass_counters() -> None:
    metrics = OperatorMetrics()
    metrics.read_state_from(lambda: SNAPSHOT)
    metrics.passes.labels(PassResult.OK).inc(4)
    metrics.pass_seconds.observe(0.02)
    got = samples(exposition(metrics))
    assert got[("grok_operator_reconcile_passes_total", (("result", "ok"),))] == 4
    assert got[("grok_operator_reconcile_passes_total", (("result", "crashed"),))] == 0
    assert got[("grok_operator_reconcile_pass_seconds_count", ())] == 1
    assert got[("grok_operator_grokdeployments", (("phase", "Ready"),))] == 2
    assert got[("grok_operator_grokdeployments", (("phase", ""),))] == 1
    assert got[("grok_operator_api_writes_total", (("kind", "StatefulSet"), ("verb", "apply")))] == 3
    assert got[("grok_operator_api_write_failures_total", (("code", "422"), ("kind", "Service")))] == 1
    assert got[("grok_operator_reconcile_slots_waiting", ())] == 7
    assert got[("grok_operator_child_watch_failing", (("kind", "Service"), ("scope", "*")))] == 1
    assert got[("grok_operator_child_watch_listed", (("kind", "ConfigMap"), ("scope", "*")))] == 0
    assert any(name == "process_resident_memory_bytes" for name, _ in got)


def test_every_phase_is_exported_from_the_start_and_no_series_names_an_object() -> None:
    metrics = OperatorMetrics()
    metrics.read_state_from(Snapshot)
    got = samples(exposition(metrics))
    phases = {dict(labels)["phase"] for name, labels in got if name == "grok_operator_grokdeployments"}
    assert phases == set(PHASES)
    assert {"Ready", "Loading", "Invalid", "Pending"} <= phases
    label_names = {key for _, labels in got for key, _ in labels}
    assert not label_names & {"name", "namespace", "grokdeployment"}


def test_readiness_names_each_watch_not_listed_or_down() -> None:
    problems = readiness_problems(SNAPSHOT)
    assert problems == [
        "Service watch (every namespace) is down, retrying: HTTP 403: forbidden",
        "ConfigMap watch (every namespace) has not listed its objects yet",
    ]
    assert readiness_problems(Snapshot(watches=(WatchHealth("Pod", "team-a", listed=True),))) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0.0.0.0:8081", ("0.0.0.0", 8081)), ("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]:9", ("::1", 9))],
)
def test_addresses_parse(value: str, expected: tuple[str, int]) -> None:
    assert parse_address(value) == expected


@pytest.mark.parametrize("value", ["8081", "localhost", ":8081", "host:port", "host:99999"])
def test_a_bad_address_is_refused_naming_the_flag_and_the_form(value: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"--metrics-address .*HOST:PORT"):
        parse_address(value)


def test_the_cli_default_and_the_empty_address() -> None:
    run = ["run", "--all-namespaces"]
    assert _parser().parse_args(run).metrics_address == parse_address(DEFAULT_METRICS_ADDRESS)
    assert _parser().parse_args([*run, "--metrics-address", ""]).metrics_address is None
    with pytest.raises(SystemExit):
        _parser().parse_args([*run, "--metrics-address", "nowhere"])


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def fetch(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def test_the_port_serves_metrics_and_readiness_on_the_address_it_is_given(
    loop: asyncio.AbstractEventLoop,
) -> None:
    current = [SNAPSHOT]
    metrics = OperatorMetrics()
    metrics.read_state_from(lambda: current[0])
    port = HttpPort(metrics, lambda: current[0])
    number = loop.run_until_complete(port.start("127.0.0.1", 0))
    base = f"http://127.0.0.1:{number}"

    async def get(path: str) -> tuple[int, str, str]:
        return await asyncio.to_thread(fetch, base + path)

    try:
        status, _, body = loop.run_until_complete(get("/readyz"))
        assert status == 503
        assert "Service watch (every namespace) is down" in body
        current[0] = Snapshot(watches=(WatchHealth("Pod", "*", listed=True),))
        assert loop.run_until_complete(get("/readyz"))[::2] == (200, "ok\n")
        status, content_type, body = loop.run_until_complete(get("/metrics"))
        assert status == 200
        assert content_type.startswith("text/plain")
        assert "grok_operator_child_watch_listed" in body
        assert loop.run_until_complete(get("/healthz"))[0] == 404  # kopf's port serves liveness
    finally:
        loop.run_until_complete(port.stop())
