"""Figure 6: the operator against a real control plane (`python -m bench operator`).

Starts the project's local control plane (`grok_devcluster`: etcd, kube-apiserver,
controller-manager, scheduler, kwok GPU nodes), installs the CRD and runs the real operator
in-process (`grok_operator.runtime.OperatorThread`), then measures:
- apply -> all children created: create a GrokDeployment and poll (every 10 ms) until its ConfigMap,
  client Service, and per replica group StatefulSet (and headless Service, for a group of more
  than one host; the bench's groups have one) all exist; median and p99
  over 50 applies. Baseline: one API write round trip (creating a ConfigMap), measured alternately
  in the same run. Goal for the median: under 1 s.
- 100 GrokDeployments to Ready: create them all at once (one 1-GPU pod each, on kwok nodes) and
  time until every one reports phase Ready with its replicas ready. Goal: under 60 s.
- API writes per minute while nothing changes: the kube-apiserver's own request counter
  (`apiserver_request_total`, write verbs on the kinds the operator writes: GrokDeployments and
  their status, StatefulSets, Services, ConfigMaps, Secrets, NetworkPolicies, Pods; status subresources that other
  controllers own are left out), plus the Events the operator posted (from its own client's
  count: every controller posts Events, and the apiserver's counter cannot tell whose) over a window in which the Ready nodes and Ready GrokDeployments
  did not change (checked before and after; a window in which they did is reported and measured
  again). Goal 0.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from bench.options import Options
from bench.report import Figure, Result
from bench.timing import median, percentile

NAME = "operator"
POLL_SECONDS = 0.01
#: Threads creating GrokDeployments at once (the fleet benchmark), and the creating client's pool.
CREATE_THREADS = 8
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "APPLY"})
#: (resource, subresource) pairs whose writes can only come from the operator when nothing changes.
OPERATOR_WRITES = frozenset(
    {
        ("grokdeployments", ""),
        ("grokdeployments", "status"),
        ("grokdeployments", "scale"),
        ("statefulsets", ""),
        ("services", ""),
        ("configmaps", ""),
        ("secrets", ""),
        ("networkpolicies", ""),
        ("events", ""),
        ("pods", ""),
    }
)
_SAMPLE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>[0-9.e+]+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def grok_deployment(name: str, namespace: str, client_service: str | None = None) -> dict[str, Any]:
    """A one-group, one-host, one-GPU GrokDeployment of the tiny preset that tolerates kwok nodes
    (`client_service`: its `spec.serving.clientService`; None: the API's default)."""
    from grok_operator import constants as c

    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "image": "example.invalid/grok-worker:bench",
            "model": {"preset": "tiny", "checkpoint": {"hostPath": {"path": "/models/tiny"}}},
            "topology": {"hostsPerReplica": 1, "gpusPerHost": 1, "gpuMemory": "16Gi"},
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
            **({"serving": {"clientService": client_service}} if client_service else {}),
        },
    }


def request_samples(metrics_text: str) -> Iterator[tuple[dict[str, str], int]]:
    """(labels, count) of every `apiserver_request_total` sample in the apiserver's Prometheus text."""
    for line in metrics_text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            yield dict(_LABEL.findall(match.group("labels"))), int(float(match.group("value")))


def parse_write_counts(metrics_text: str) -> Counter[str]:
    """Write requests per "resource/subresource" from the apiserver's Prometheus text."""
    counts: Counter[str] = Counter()
    for labels, value in request_samples(metrics_text):
        key = (labels.get("resource", ""), labels.get("subresource", ""))
        if labels.get("verb") in WRITE_VERBS and key in OPERATOR_WRITES:
            counts["/".join(filter(None, key))] += value
    return counts


def wait(what: str, probe: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(POLL_SECONDS)


class Bench:
    """The cluster-facing steps, over one kubernetes ApiClient for reads and the operator's own
    JSON client (`api`, a KubeApi) for the GrokDeployments' creates and watches: watch events
    decoded into the typed client's models cost this process, which also runs the operator,
    several times the CPU of the JSON alone."""

    def __init__(self, handle: Any) -> None:
        from kubernetes import client as k8s

        from grok_operator import constants as c
        from grok_operator.kube import KubeApi, load_configuration

        self.c = c
        self.k8s = k8s
        self.handle = handle
        api = handle.api_client()
        self.custom = k8s.CustomObjectsApi(api)
        self.core = k8s.CoreV1Api(api)
        self.apps = k8s.AppsV1Api(api)
        configuration = load_configuration(handle.kubeconfig)
        configuration.connection_pool_maxsize = CREATE_THREADS
        self.api = KubeApi(configuration)

    def close(self) -> None:
        self.api.close()

    def namespace(self, name: str) -> str:
        self.core.create_namespace(self.k8s.V1Namespace(metadata=self.k8s.V1ObjectMeta(name=name)))
        return name

    def create(self, body: dict[str, Any]) -> None:
        if not self.api.create(body):
            meta = body["metadata"]
            raise RuntimeError(f"{body['kind']} {meta['namespace']}/{meta['name']} exists already")

    def children_exist(self, name: str, namespace: str, replicas: int, hosts: int = 1) -> bool:
        selector = f"{self.c.LABEL_DEPLOYMENT}={name}"
        if len(self.core.list_namespaced_config_map(namespace, label_selector=selector).items) < 1:
            return False
        services = 1 + (replicas if hosts > 1 else 0)  # client Service (+ headless ones)
        if len(self.core.list_namespaced_service(namespace, label_selector=selector).items) < services:
            return False
        return (
            len(self.apps.list_namespaced_stateful_set(namespace, label_selector=selector).items) >= replicas
        )

    def ready_count(self, namespace: str) -> int:
        c = self.c
        listing: dict[str, Any] = self.custom.list_namespaced_custom_object(  # type: ignore[assignment]
            c.GROUP, c.VERSION, namespace, c.PLURAL
        )
        ready = 0
        for gd in listing["items"]:
            status = gd.get("status") or {}
            want = gd["spec"].get("replicas", 1)
            if status.get("phase") == "Ready" and status.get("readyReplicas") == want:
                ready += 1
        return ready

    def cluster_state(self, namespaces: list[str]) -> tuple[int, int]:
        """(Ready nodes, Ready GrokDeployments in `namespaces`): what an idle window must not change."""
        nodes = 0
        for node in self.core.list_node().items:
            conditions = (node.status.conditions if node.status else None) or []
            nodes += any(c.type == "Ready" and c.status == "True" for c in conditions)
        return nodes, sum(self.ready_count(ns) for ns in namespaces)

    def write_counts(self) -> Counter[str]:
        return parse_write_counts(self.handle.kubectl("get", "--raw", "/metrics").stdout)

    def api_round_trip(self, namespace: str, i: int) -> float:
        start = time.perf_counter()
        body = self.k8s.V1ConfigMap(metadata=self.k8s.V1ObjectMeta(name=f"rtt-{i}"), data={"k": "v"})
        self.core.create_namespaced_config_map(namespace, body)
        return time.perf_counter() - start


def install_crd(handle: Any) -> None:
    from pathlib import Path

    from grok_operator import constants as c

    crd = Path(__file__).resolve().parents[1] / "charts" / "grok-operator" / "crds" / f"{c.CRD_NAME}.yaml"
    handle.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    handle.wait_crds_established([c.CRD_NAME])


def operator_writes(operator: Any) -> Counter[str]:
    """The operator's own client's write counts by "verb Kind" (grok_operator.kube.KubeApi)."""
    for _ in range(10):
        try:  # its reconcile threads may be counting a write right now
            return Counter(operator.state.api.write_counts)
        except RuntimeError:
            time.sleep(0.01)
    return Counter(operator.state.api.write_counts)


def idle_window(bench: Bench, operator: Any, namespaces: list[str], idle_s: float, result: Result) -> None:
    """Count writes over a window in which nothing in the cluster changed.

    "Nothing changed" is checked, not assumed: the Ready nodes and Ready GrokDeployments are counted
    before and after each window. A window in which they changed (the operator's writes are then its
    reaction to a real change) is reported in the notes and followed by another, up to three.
    """
    for attempt in range(1, 4):
        state_before = bench.cluster_state(namespaces)
        before, ops_before = bench.write_counts(), operator_writes(operator)
        time.sleep(idle_s)
        after, ops_after = bench.write_counts(), operator_writes(operator)
        state_after = bench.cluster_state(namespaces)
        diff, ops = after - before, ops_after - ops_before
        # Events are written by every controller (node-controller, scheduler, ...); the apiserver's
        # counter cannot tell whose, so the operator's Events come from its own client's count.
        all_events = diff.pop("events", 0)
        own_events = sum(n for kind, n in ops.items() if kind.endswith(" Event"))
        writes = sum(diff.values()) + own_events
        detail = (
            f"apiserver writes on the operator's kinds {dict(diff) or '{}'}, Events posted by the operator "
            f"{own_events} (by all components {all_events}); the operator's own client counted "
            f"{dict(ops) or '{}'}"
        )
        if state_after != state_before and attempt < 3:
            result.note(
                f"idle window {attempt}",
                f"not idle: Ready nodes and Ready GrokDeployments went {state_before} -> {state_after} "
                f"during it ({detail}); measuring again",
            )
            continue
        result.add(
            Figure(
                NAME,
                "idle_api_writes_per_minute",
                writes * 60.0 / idle_s,
                "writes/min",
                goal="==0",
                limited_by=f"writes seen while nothing changed: {detail}",
            )
        )
        changed = (
            ""
            if state_after == state_before
            else f" (the cluster still changed: {state_before} -> {state_after})"
        )
        result.note(
            f"idle window {attempt}",
            f"{idle_s:.0f} s, (Ready nodes, Ready GrokDeployments) = {state_after}{changed}; {detail}",
        )
        return


def measure(handle: Any, options: Options, result: Result) -> None:
    from grok_operator.runtime import OperatorConfig, OperatorThread

    applies = 3 if options.smoke else 50
    fleet = 5 if options.smoke else 100
    idle_s = 5.0 if options.smoke else 60.0
    install_crd(handle)
    bench = Bench(handle)
    at_start = bench.write_counts()
    operator = OperatorThread(OperatorConfig(kubeconfig=handle.kubeconfig, all_namespaces=True)).start()
    try:
        ns = bench.namespace(f"bench-apply-{os.getpid()}")
        latencies: list[float] = []
        round_trips: list[float] = []
        for i in range(applies):
            round_trips.append(bench.api_round_trip(ns, i))
            name = f"apply-{i}"
            start = time.perf_counter()
            bench.create(grok_deployment(name, ns))
            wait(f"children of {name}", partial(bench.children_exist, name, ns, 1), timeout=60)
            latencies.append(time.perf_counter() - start)
        rtt = median(round_trips)
        result.add(
            Figure(NAME, "apply_to_children_median", median(latencies), "s", baseline=rtt, goal="value<=1")
        )
        result.add(Figure(NAME, "apply_to_children_p99", percentile(latencies, 99), "s", baseline=rtt))
        result.note(
            "apply",
            f"{applies} sequential applies, children polled every {POLL_SECONDS * 1e3:.0f} ms; "
            f"baseline: one ConfigMap create round trip {rtt * 1e3:.1f} ms (median)",
        )

        fleet_ns = bench.namespace(f"bench-fleet-{os.getpid()}")
        start = time.perf_counter()
        for i in range(fleet):
            bench.create(grok_deployment(f"fleet-{i}", fleet_ns))
        created = time.perf_counter() - start
        wait(f"{fleet} GrokDeployments Ready", lambda: bench.ready_count(fleet_ns) >= fleet, timeout=600)
        to_ready = time.perf_counter() - start
        result.add(Figure(NAME, f"{fleet}_grokdeployments_to_ready", to_ready, "s", goal="<=60"))
        result.note(
            "fleet", f"{fleet} created in {created:.1f} s, all Ready {to_ready:.1f} s after the first create"
        )

        time.sleep(5.0)  # let the last status writes land before the idle window
        if not (bench.write_counts() - at_start)["statefulsets"]:
            raise RuntimeError(
                "apiserver_request_total showed no StatefulSet writes although the operator made "
                "some: the metrics format changed, so idle writes cannot be counted"
            )
        idle_window(bench, operator, [ns, fleet_ns], idle_s, result)
    finally:
        operator.stop()
        bench.close()


def run(options: Options) -> Result:
    from grok_devcluster.cluster import ClusterOptions, start_cluster
    from grok_devcluster.nodes import GpuNodeSpec

    nodes = 2 if options.smoke else 20  # 8 GPUs each: room for 150 one-GPU pods
    cluster = start_cluster(
        ClusterOptions(
            name=f"bench-{os.getpid()}", gpu_nodes=nodes, node_spec=GpuNodeSpec(gpus=8), die_with_parent=True
        )
    )
    result = Result(NAME)
    try:
        measure(cluster.handle, options, result)
    finally:
        cluster.stop()
    return result
