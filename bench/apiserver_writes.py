"""Figure 14: what each write a GrokDeployment costs the kube-apiserver, ÷ a ConfigMap's.

Figure 13 is bound by CPU on a small machine, and a large part of it is the apiserver's. This
measures the apiserver's own CPU (its process's utime + stime from /proc) per request for the
writes every GrokDeployment brings whoever runs it, on a fresh local control plane:

    the operator brings one GrokDeployment to Ready on one kwok node -> its status (what the
    operator really writes) is kept -> the operator stops -> batches of N requests from 8 threads:
    ConfigMap creates (the baseline: the operator's own rendered ConfigMap), GrokDeployment
    creates, kopf's finalizer (a merge patch of metadata), two status patches (the kept status,
    the second with a changed message so each is a real write), ConfigMap merge patches.

Each batch's CPU is less the apiserver's idle rate (measured first) over the batch. The figures
are milliseconds of apiserver CPU per request; each GrokDeployment figure's ratio is ÷ one
ConfigMap create. N: 500, or 20 with `--size smoke`.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.fleet_floor import children_of
from bench.operator_apply import CREATE_THREADS, Bench, grok_deployment, install_crd
from bench.options import Options
from bench.report import Figure, Result

NAME = "apiserver_writes"
Obj = dict[str, Any]


def cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid`, in seconds; the process must be running."""
    from grok_devcluster.process import process_cpu_seconds

    seconds = process_cpu_seconds(pid)
    if seconds is None:
        raise RuntimeError(f"process {pid} (the kube-apiserver) is gone")
    return seconds


class Meter:
    """The apiserver's CPU per request over batches, less its idle rate."""

    def __init__(self, pid: int, idle_s: float) -> None:
        self.pid = pid
        start = cpu_seconds(pid)
        time.sleep(idle_s)
        self.idle_rate = (cpu_seconds(pid) - start) / idle_s

    def per_request_ms(self, count: int, request: Callable[[int], object]) -> float:
        time.sleep(1.0)  # the previous batch's watch events are delivered
        cpu, start = cpu_seconds(self.pid), time.perf_counter()
        with ThreadPoolExecutor(max_workers=CREATE_THREADS) as pool:
            list(pool.map(request, range(count)))
        time.sleep(1.0)
        elapsed = time.perf_counter() - start
        return 1000.0 * (cpu_seconds(self.pid) - cpu - self.idle_rate * elapsed) / count


def ready_status(bench: Bench, namespace: str) -> Obj:
    """The status the operator writes for the bench's GrokDeployment once it is Ready."""
    from grok_operator.runtime import OperatorConfig, OperatorThread

    operator = OperatorThread(OperatorConfig(kubeconfig=bench.handle.kubeconfig, namespaces=(namespace,)))
    operator.start()
    try:
        bench.create(grok_deployment("template", namespace))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            gd = bench.api.get(bench.c.KIND, namespace, "template") or {}
            if (gd.get("status") or {}).get("phase") == "Ready":
                return dict(gd["status"])
            time.sleep(0.2)
    finally:
        operator.stop()
    raise TimeoutError("the bench's GrokDeployment was not Ready within 120 s")


def requests(bench: Bench, namespace: str, status: Obj) -> dict[str, Callable[[int], object]]:
    """Each batch's request for object i, in the order they run."""
    c, custom = bench.c, bench.custom
    config_map = children_of("template", namespace, "ClusterIP")[1]
    second = copy.deepcopy(status)
    for cond in second.get("conditions") or []:
        cond["message"] = f"{cond.get('message', '')} (again)"

    def named(obj: Obj, name: str) -> Obj:
        out = copy.deepcopy(obj)
        out["metadata"]["name"] = name
        return out

    def patch_status(body: Obj) -> Callable[[int], object]:
        return lambda i: bench.api.patch_status(namespace, f"gd-{i}", body)

    return {
        "configmap_create": lambda i: bench.api.create(named(config_map, f"cm-{i}")),
        "grokdeployment_create": lambda i: bench.create(grok_deployment(f"gd-{i}", namespace)),
        "grokdeployment_finalizer_patch": lambda i: custom.patch_namespaced_custom_object(
            c.GROUP, c.VERSION, namespace, c.PLURAL, f"gd-{i}", {"metadata": {"finalizers": [c.FINALIZER]}}
        ),
        "grokdeployment_status_patch": patch_status(status),
        "grokdeployment_status_patch_again": patch_status(second),
        "configmap_merge_patch": lambda i: bench.core.patch_namespaced_config_map(
            f"cm-{i}", namespace, {"metadata": {"annotations": {"bench": "patched"}}}
        ),
    }


def measure(handle: Any, pid: int, count: int, result: Result) -> None:
    install_crd(handle)
    bench = Bench(handle)
    try:
        namespace = bench.namespace(f"bench-writes-{os.getpid()}")
        status = ready_status(bench, namespace)
        meter = Meter(pid, idle_s=5.0)
        costs = {
            name: meter.per_request_ms(count, request)
            for name, request in requests(bench, namespace, status).items()
        }
    finally:
        bench.close()
    baseline = costs["configmap_create"]
    for name, ms in costs.items():
        result.add(
            Figure(NAME, f"{name}_cpu", ms, "ms", baseline=None if name.startswith("configmap") else baseline)
        )
    result.note(
        "method",
        f"{count} requests per kind from {CREATE_THREADS} threads; the apiserver's idle "
        f"{1000 * meter.idle_rate:.0f} ms/s taken off each batch; ratio ÷ one ConfigMap create",
    )


def run(options: Options) -> Result:
    from grok_devcluster.cluster import ClusterOptions, start_cluster
    from grok_devcluster.nodes import GpuNodeSpec

    cluster = start_cluster(
        ClusterOptions(
            name=f"writes-{os.getpid()}", gpu_nodes=1, node_spec=GpuNodeSpec(gpus=8), die_with_parent=True
        )
    )
    result = Result(NAME)
    try:
        pid = next(p.pid for p in cluster.state.processes if p.name == "kube-apiserver")
        measure(cluster.handle, pid, 20 if options.smoke else 500, result)
    finally:
        cluster.stop()
    return result
