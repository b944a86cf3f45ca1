"""Figure 13: the operator at fleet size (`python -m bench fleet`).

Starts the local control plane with enough kwok GPU nodes (8 GPUs each; 130 for 1,000 objects),
runs the real operator in-process (`grok_operator.runtime.OperatorThread`, default settings), and
measures:
- N one-GPU GrokDeployments to Ready: create them all at once (8 client threads) and time until
  every one reports phase Ready; reported ÷ the limit of 120 s (goal <= 1). A note gives each
  object's own time from its creation to its Ready condition (p50, p99, max) beside it.
- An idle window (GROK_BENCH_IDLE_S seconds, default 300): write requests on the operator's kinds
  (the kube-apiserver's own `apiserver_request_total`, plus the Events the operator's client
  posted; goal 0) and LIST requests on the children's kinds (StatefulSets, Services, ConfigMaps,
  Pods) from the same counter, by any client, ÷ the LISTs the passes in the window would have made
  before the watch-fed cache (4 per pass; goal <= 0.01): what remains are the watches' own re-lists
  (after a "410 Gone"; the notes show WATCH restarts). The operator's own client's LIST count
  (`KubeApi.list_calls`) is reported beside: it must stay 0, a pass reads the watch-fed cache.
- The process's resident memory (VmRSS) after the window, and its growth since before the
  operator started (the operator's share: its caches, watches and threads).
- The floor (fleet_floor.py): on a fresh cluster of the same size, the same children applied
  directly, with no operator and no GrokDeployment, until every pod is Ready. The operator's time
  to Ready ÷ that floor is what the operator adds to the control plane's own work (goal <= 1.25).

Size: GROK_BENCH_FLEET (default 1000) objects; `--size smoke` runs 10 with a 5 s window. Their
client Services: GROK_BENCH_CLIENT_SERVICE, ClusterIP (the default, as in the API) or Headless
(`spec.serving.clientService`: no ClusterIP to allocate; the figure's name then ends in
`_headless`). Reconcile threads (and the floor's apply threads): GROK_BENCH_WORKERS, default the
operator's own (16).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
import typing
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, NamedTuple

from bench.fleet_floor import measure_floor
from bench.followed import Followed
from bench.operator_apply import (
    CREATE_THREADS,
    Bench,
    grok_deployment,
    install_crd,
    operator_writes,
    parse_write_counts,
    request_samples,
)
from bench.options import Options
from bench.report import Figure, Result
from bench.timing import percentile

NAME = "fleet"
READY_LIMIT_S = 120.0
GPUS_PER_NODE = 8
#: Resources whose LISTs an idle operator must not cause.
LISTED = frozenset({"grokdeployments", "statefulsets", "services", "configmaps", "pods"})
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def request_counts(metrics_text: str, verb: str) -> Counter[str]:
    """Requests with `verb` (LIST, WATCH) per resource in LISTED, from the apiserver's metrics."""
    counts: Counter[str] = Counter()
    for labels, value in request_samples(metrics_text):
        if labels.get("verb") == verb and labels.get("resource") in LISTED and not labels.get("subresource"):
            counts[labels["resource"]] += value
    return counts


_DURATION = re.compile(
    r"^apiserver_request_duration_seconds_(?P<part>sum|count)\{(?P<labels>[^}]*)\}\s+(?P<value>[0-9.e+]+)$"
)


def request_seconds(metrics_text: str) -> dict[str, float]:
    """Seconds the apiserver spent per "VERB resource[/subresource]" (its latency histogram's
    sums: where the control plane's time went), all clients together."""
    seconds: dict[str, float] = {}
    for line in metrics_text.splitlines():
        match = _DURATION.match(line)
        if not match or match.group("part") != "sum":
            continue
        labels = dict(_LABEL.findall(match.group("labels")))
        if labels.get("verb") in {"WATCH", "CONNECT"}:
            continue  # a watch's duration is how long it stayed open
        kind = _request_kind(labels)
        seconds[kind] = seconds.get(kind, 0.0) + float(match.group("value"))
    return seconds


def request_mix(before: str, after: str) -> str:
    """The ten costliest request kinds between two metrics texts: count and apiserver seconds."""
    earlier = request_seconds(before)
    seconds = {kind: secs - earlier.get(kind, 0.0) for kind, secs in request_seconds(after).items()}
    counts = all_request_counts(after)
    counts.subtract(all_request_counts(before))
    top = sorted(seconds.items(), key=lambda kv: -kv[1])[:10]
    return "; ".join(f"{kind} {counts[kind]} in {secs:.1f} s" for kind, secs in top)


def all_request_counts(metrics_text: str) -> Counter[str]:
    """Requests per "VERB resource[/subresource]", all clients together."""
    counts: Counter[str] = Counter()
    for labels, value in request_samples(metrics_text):
        counts[_request_kind(labels)] += value
    return counts


def _request_kind(labels: dict[str, str]) -> str:
    resource = "/".join(filter(None, (labels.get("resource", ""), labels.get("subresource", ""))))
    return f"{labels.get('verb', '')} {resource}"


def rss_bytes() -> int:
    """This process's resident set size (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def sizes(options: Options) -> tuple[int, float]:
    """(GrokDeployments, idle seconds) for this run."""
    if options.smoke:
        return 10, 5.0
    return int(os.environ.get("GROK_BENCH_FLEET", "1000")), float(os.environ.get("GROK_BENCH_IDLE_S", "300"))


def client_service_mode() -> str:
    """The fleet's `spec.serving.clientService` (GROK_BENCH_CLIENT_SERVICE; the API's default and
    choices)."""
    from grok_operator.api.spec import ServingSpec

    field = ServingSpec.model_fields["client_service"]
    modes = typing.get_args(field.annotation)
    mode = os.environ.get("GROK_BENCH_CLIENT_SERVICE", str(field.default))
    if mode not in modes:
        raise SystemExit(f"GROK_BENCH_CLIENT_SERVICE={mode!r}: use one of {', '.join(modes)}")
    return mode


def reconcile_workers() -> int:
    """The operator's reconcile threads (GROK_BENCH_WORKERS, default the operator's own), and the
    floor's apply threads: the same concurrency on both sides."""
    from grok_operator.runtime import OperatorConfig

    return int(os.environ.get("GROK_BENCH_WORKERS", OperatorConfig().workers))


def _suffix(mode: str) -> str:
    """How a figure's name tells a headless fleet's figures apart."""
    return "_headless" if mode == "Headless" else ""


def create_fleet(bench: Bench, namespace: str, count: int, mode: str) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=CREATE_THREADS) as pool:
        list(pool.map(lambda i: bench.create(grok_deployment(f"fleet-{i}", namespace, mode)), range(count)))
    return time.perf_counter() - start


class Seen(NamedTuple):
    """One GrokDeployment as the bench follows it."""

    #: `status.phase`; None before the operator's first status.
    phase: str | None
    #: Seconds from its creationTimestamp to its Ready condition turning True (None: not Ready);
    #: both are API timestamps, in whole seconds.
    creation_to_ready: float | None


def seen(gd: dict[str, Any]) -> Seen:
    status = gd.get("status") or {}
    ready: dict[str, Any] = next(
        (cond for cond in status.get("conditions") or [] if cond.get("type") == "Ready"), {}
    )
    if ready.get("status") != "True":
        return Seen(status.get("phase"), None)
    created = datetime.fromisoformat(gd["metadata"]["creationTimestamp"])
    return Seen(
        status.get("phase"), (datetime.fromisoformat(ready["lastTransitionTime"]) - created).total_seconds()
    )


def fleet_phases(api: Any, namespace: str) -> Followed[Seen]:
    """Each GrokDeployment's phase and creation-to-Ready time, followed by a WATCH (an event per
    status write, where polling would re-read the whole fleet every second, on the apiserver and
    in this process, which also runs the operator); `api`: a KubeApi."""
    from grok_operator import constants as c

    return Followed(api, c.KIND, namespace, value=seen)


def phase_counts(fleet: Followed[Seen]) -> tuple[int, int]:
    """(objects with a status, objects Ready)."""
    phases = [s.phase for s in fleet.values.values()]
    return sum(1 for phase in phases if phase), phases.count("Ready")


def per_object(fleet: Followed[Seen]) -> str:
    """Each object's own creation-to-Ready time (what Kubernetes' startup-latency SLOs measure),
    where the figure counts from the first create to the last Ready."""
    times = [s.creation_to_ready for s in fleet.values.values() if s.creation_to_ready is not None]
    if not times:
        return "none Ready"
    return (
        f"p50 {percentile(times, 50):.0f} s, p99 {percentile(times, 99):.0f} s, max {max(times):.0f} s "
        f"over {len(times)} objects (API timestamps, whole seconds)"
    )


def wait_ready(
    bench: Bench, namespace: str, count: int, timeout: float, result: Result, start: float
) -> tuple[float | None, int]:
    """Seconds until `count` are Ready (None on timeout) and how many were Ready at the end; notes
    when every one first had a status (the operator's first pass done) and Ready counts over time.
    Times count from `start` (the first create)."""
    fleet = fleet_phases(bench.api, namespace)
    fleet.relist()
    ready = 0
    acted: float | None = None
    progress: list[tuple[float, int]] = []
    while time.perf_counter() - start < timeout:
        with_status, ready = phase_counts(fleet)
        elapsed = time.perf_counter() - start
        if acted is None and with_status >= count:
            acted = elapsed
            result.note("operator first passes", f"every GrokDeployment had a status after {acted:.1f} s")
        if not progress or elapsed - progress[-1][0] >= 30:
            progress.append((elapsed, ready))
        if ready >= count:
            break
        fleet.follow(1.0)
    else:
        return None, ready
    result.note("ready over time", ", ".join(f"{t:.0f} s: {n}" for t, n in progress))
    result.note("creation to Ready, per object", per_object(fleet))
    return time.perf_counter() - start, ready


def measure_idle(bench: Bench, operator: Any, namespace: str, idle_s: float, result: Result) -> None:
    state_before = bench.cluster_state([namespace])
    metrics = bench.handle.kubectl("get", "--raw", "/metrics").stdout
    writes0, lists0, watches0 = (
        parse_write_counts(metrics),
        request_counts(metrics, "LIST"),
        request_counts(metrics, "WATCH"),
    )
    if not lists0:
        raise RuntimeError("apiserver_request_total shows no LIST at all: its format changed")
    ops0, own_lists0 = operator_writes(operator), operator.state.api.list_calls
    passes0 = operator.state.passes
    time.sleep(idle_s)
    metrics = bench.handle.kubectl("get", "--raw", "/metrics").stdout
    writes = parse_write_counts(metrics) - writes0
    lists = request_counts(metrics, "LIST") - lists0
    watches = request_counts(metrics, "WATCH") - watches0
    ops, own_lists = operator_writes(operator) - ops0, operator.state.api.list_calls - own_lists0
    passes = operator.state.passes - passes0
    state_after = bench.cluster_state([namespace])
    writes.pop("events", None)  # every component posts Events; the operator's come from its client
    own_events = sum(n for kind, n in ops.items() if kind.endswith(" Event"))
    result.add(Figure(NAME, "idle_writes", float(sum(writes.values()) + own_events), "requests", goal="==0"))
    child_lists = sum(n for kind, n in lists.items() if kind != "grokdeployments")
    result.add(
        Figure(
            NAME,
            "idle_child_lists_per_pass_list",
            float(child_lists),
            "requests",
            # No pass in a short window (the smoke size): nothing to compare with.
            baseline=4.0 * passes if passes else None,
            goal="<=0.01",
            limited_by="LISTs by any client; the watches re-list after a 410 Gone (see WATCH restarts)",
        )
    )
    result.add(Figure(NAME, "idle_operator_client_lists", float(own_lists), "requests", goal="==0"))
    changed = "" if state_after == state_before else f" (changed from {state_before})"
    result.note(
        "idle window",
        f"{idle_s:.0f} s; (Ready nodes, Ready GrokDeployments) = {state_after}{changed}; apiserver writes "
        f"{dict(writes) or '{}'}, operator Events {own_events}; LISTs {dict(lists) or '{}'}; "
        f"WATCH (re)starts {dict(watches) or '{}'}; {passes} reconcile passes (a LIST per child kind "
        "each before the watch-fed cache: the baseline)",
    )


def measure(
    handle: Any, options: Options, result: Result, count: int, idle_s: float, mode: str
) -> float | None:
    """The operator's figures; returns its time to Ready (None when not all were Ready)."""
    from grok_operator.runtime import OperatorConfig, OperatorThread

    install_crd(handle)
    bench = Bench(handle)
    rss_before = rss_bytes()
    operator = OperatorThread(
        OperatorConfig(kubeconfig=handle.kubeconfig, all_namespaces=True, workers=reconcile_workers())
    ).start()
    try:
        namespace = bench.namespace(f"bench-fleet-{os.getpid()}")
        metrics_before = handle.kubectl("get", "--raw", "/metrics").stdout
        start = time.perf_counter()
        created = create_fleet(bench, namespace, count, mode)
        timeout = 60.0 if options.smoke else max(10 * READY_LIMIT_S, 600.0)
        to_ready, ready = wait_ready(bench, namespace, count, timeout, result, start)
        metrics_after = handle.kubectl("get", "--raw", "/metrics").stdout
        result.note("requests to Ready", request_mix(metrics_before, metrics_after))
        result.note("passes to Ready", f"{operator.state.passes} reconcile passes for {count} objects")
        if to_ready is None:  # report what was reached rather than nothing
            result.add(Figure(NAME, "ready_at_timeout", float(ready), "objects", baseline=count, goal=">=1"))
            result.note("fleet", f"only {ready} of {count} Ready after {timeout:.0f} s: no idle window")
            return None
        figure = f"{count}_grokdeployments_to_ready{_suffix(mode)}"
        result.add(Figure(NAME, figure, to_ready, "s", baseline=READY_LIMIT_S, goal="<=1"))
        result.note(
            "fleet",
            f"{count} created in {created:.1f} s ({CREATE_THREADS} client threads, client Services {mode}); "
            f"all Ready {to_ready:.1f} s after the first create",
        )
        time.sleep(5.0)  # the last status writes land
        measure_idle(bench, operator, namespace, idle_s, result)
        rss = rss_bytes()
        result.add(Figure(NAME, "process_rss", rss / 2**20, "MiB"))
        result.add(Figure(NAME, "operator_rss_growth", (rss - rss_before) / 2**20, "MiB"))
        return to_ready
    finally:
        operator.stop()
        bench.close()


def run(options: Options) -> Result:
    count, idle_s = sizes(options)
    mode = client_service_mode()  # a wrong value stops the run before a cluster starts
    nodes = math.ceil(count * 1.04 / GPUS_PER_NODE)  # 130 for 1,000: a few GPUs to spare
    result = Result(NAME)
    with _cluster(nodes, "fleet", result) as handle:
        to_ready = measure(handle, options, result, count, idle_s, mode)
    if to_ready is None:
        return result
    with _cluster(nodes, "floor", result) as handle:
        timeout = max(10 * READY_LIMIT_S, 600.0)
        floor = measure_floor(handle, count, mode, reconcile_workers(), timeout)
    if floor is None:
        result.note("control plane alone", f"{count} pods not all Ready within {timeout:.0f} s")
        return result
    figure = f"{count}_to_ready_vs_control_plane_alone{_suffix(mode)}"
    result.add(Figure(NAME, figure, to_ready, "s", baseline=floor, goal="<=1.25"))
    result.note(
        "control plane alone",
        f"the same children applied directly (no operator, no GrokDeployments): {count} pods Ready in {floor:.1f} s",
    )
    return result


@contextlib.contextmanager
def _cluster(nodes: int, name: str, result: Result) -> Iterator[Any]:
    """A fresh local control plane with `nodes` kwok GPU nodes, stopped on exit."""
    from grok_devcluster.cluster import ClusterOptions, start_cluster
    from grok_devcluster.nodes import GpuNodeSpec

    started = time.perf_counter()
    cluster = start_cluster(
        ClusterOptions(
            name=f"{name}-{os.getpid()}",
            gpu_nodes=nodes,
            node_spec=GpuNodeSpec(gpus=GPUS_PER_NODE),
            die_with_parent=True,
        )
    )
    result.note(
        f"cluster ({name})",
        f"{nodes} kwok nodes x {GPUS_PER_NODE} GPUs up in {time.perf_counter() - started:.0f} s",
    )
    try:
        yield cluster.handle
    finally:
        cluster.stop()
