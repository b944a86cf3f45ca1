"""Prometheus metrics of one operator process.

Data flow: each GrokDeployment's reconcile loop (handlers.py) counts its passes by result and
times them (`OperatorMetrics.passes`, `.pass_seconds`); everything else is read when Prometheus
scrapes, from where it already lives, through one `Snapshot` that the operator's state builds on
the event loop (`OperatorState.metrics_snapshot`): the objects' phases, the API client's write
counters, the reconcile slots' queue and the child watches' health. So a figure is kept once and
can never disagree with what the operator itself acts on. http_port.py serves the exposition.

No series is per object: labels are a result, phase, verb, kind or HTTP status, never an object's
name, so the series count stays fixed at any fleet size and a scrape names no object; the child
watches' `scope` is a namespace the operator was told to watch (`*`: every namespace).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from grok_operator.constants import Phase

#: Every phase a GrokDeployment's status can report: each is exported, 0 when no object has it,
#: so a dashboard's series exist before the first object reaches a phase.
PHASES: tuple[str, ...] = tuple(
    value for name, value in vars(Phase).items() if not name.startswith("_") and isinstance(value, str)
)
#: A pass is one to a few API writes: milliseconds when idle, seconds on a loaded apiserver.
_PASS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class PassResult:
    """The `result` label of `grok_operator_reconcile_passes_total`."""

    OK = "ok"
    #: The apiserver refused or failed a request: the pass is retried with backoff.
    API_ERROR = "api_error"
    #: A bug in the operator: logged with its traceback, retried with backoff.
    CRASHED = "crashed"


@dataclass(frozen=True)
class WatchHealth:
    """One child kind's watch in one scope (a namespace, or every namespace)."""

    kind: str
    scope: str
    listed: bool
    #: The last failure while the watch is down (None: streaming, or listing for the first time).
    failure: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """What a scrape reads of the running operator, taken on its event loop."""

    #: Objects whose loop runs, by the phase their last pass reported ("" before the first pass).
    phases: Mapping[str, int] = field(default_factory=dict)
    #: API writes answered so far, by (verb, kind); failures by (kind, HTTP status).
    writes: Mapping[tuple[str, str], int] = field(default_factory=dict)
    write_failures: Mapping[tuple[str, str], int] = field(default_factory=dict)
    #: Loops waiting for a reconcile slot.
    slots_waiting: int = 0
    watches: tuple[WatchHealth, ...] = ()


class OperatorMetrics:
    """The operator's registry: counters the loops update, and a collector over `Snapshot`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.passes = Counter(
            "grok_operator_reconcile_passes",
            "Reconcile passes by result: ok; api_error (retried with backoff); crashed (an operator "
            "bug, logged with its traceback, retried with backoff).",
            ["result"],
            registry=self.registry,
        )
        self.pass_seconds = Histogram(
            "grok_operator_reconcile_pass_seconds",
            "Time of one reconcile pass, from its start in a reconcile thread to its end "
            "(its API writes included, its wait for a slot not).",
            buckets=_PASS_BUCKETS,
            registry=self.registry,
        )
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        for result in (PassResult.OK, PassResult.API_ERROR, PassResult.CRASHED):
            self.passes.labels(result)  # exported at 0 from the start

    def read_state_from(self, snapshot: Callable[[], Snapshot]) -> None:
        """Export what `snapshot()` returns at each scrape (call once, with the operator's state)."""
        self.registry.register(_StateCollector(snapshot))


class _StateCollector(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        now = self._snapshot()
        yield _phases(now.phases)
        yield _labelled(
            CounterMetricFamily(
                "grok_operator_api_writes",
                "API writes the operator made (answered, successfully or not), by verb and kind.",
                labels=["verb", "kind"],
            ),
            now.writes,
        )
        yield _labelled(
            CounterMetricFamily(
                "grok_operator_api_write_failures",
                "API writes the apiserver refused or failed, by kind and HTTP status.",
                labels=["kind", "code"],
            ),
            now.write_failures,
        )
        yield GaugeMetricFamily(
            "grok_operator_reconcile_slots_waiting",
            "GrokDeployment loops waiting for a reconcile slot (the operator's work queue).",
            value=now.slots_waiting,
        )
        yield from _watches(now.watches)


def _phases(phases: Mapping[str, int]) -> Metric:
    family = GaugeMetricFamily(
        "grok_operator_grokdeployments",
        "GrokDeployments this operator reconciles, by the phase of their last pass "
        '("" before their first pass).',
        labels=["phase"],
    )
    for phase in sorted(set(PHASES) | set(phases)):
        family.add_metric([phase], phases.get(phase, 0))
    return family


def _labelled(family: CounterMetricFamily, counts: Mapping[tuple[str, str], int]) -> Metric:
    for labels, count in sorted(counts.items()):
        family.add_metric(list(labels), count)
    return family


def _watches(watches: tuple[WatchHealth, ...]) -> Iterator[Metric]:
    listed = GaugeMetricFamily(
        "grok_operator_child_watch_listed",
        "1 once a child kind's watch has listed its objects into the operator's cache.",
        labels=["kind", "scope"],
    )
    failing = GaugeMetricFamily(
        "grok_operator_child_watch_failing",
        "1 while a child kind's watch is down and retrying (the cache may be stale).",
        labels=["kind", "scope"],
    )
    for watch in watches:
        listed.add_metric([watch.kind, watch.scope], int(watch.listed))
        failing.add_metric([watch.kind, watch.scope], int(watch.failure is not None))
    yield listed
    yield failing
