"""The operator reads children from its watch-fed cache: passes make no LIST calls.

30 GrokDeployments (one 1-GPU host each) under a real operator resyncing every 0.5 s: over a
window of several resyncs the operator finishes passes for all of them, while the kube-apiserver's
own counter (`apiserver_request_total`, verb LIST) shows no LIST of StatefulSets, Services,
ConfigMaps or Pods and the operator's client counts none. Before the cache, every pass listed all
four kinds (4 x passes). The 1,000-object figures: `python -m bench fleet` (docs/benchmarks.md).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from test_operator_support import Kube, install_crd, one_host, start_operator, wait_for

from bench.operator_fleet import request_counts

pytestmark = pytest.mark.cluster

FLEET = 30
CHILD_KINDS = ("statefulsets", "services", "configmaps", "pods")


def child_lists(cluster: Any) -> dict[str, int]:
    counts = request_counts(cluster.kubectl("get", "--raw", "/metrics").stdout, "LIST")
    return {kind: counts[kind] for kind in CHILD_KINDS}


def test_passes_do_not_list_children(cluster: Any, namespace: str) -> None:
    install_crd(cluster)
    kube = Kube(cluster, namespace)
    operator = start_operator(cluster, resync_seconds=0.5)
    try:
        for i in range(FLEET):
            kube.apply(one_host(f"c{i}", namespace))
        wait_for(
            f"all {FLEET} GrokDeployments to have a status",
            lambda: all(gd.get("status", {}).get("phase") for gd in kube.items("grokdeployments")),
            120,
        )
        lists_before, own_before = child_lists(cluster), operator.state.api.list_calls
        passes_before = operator.state.passes
        time.sleep(3.0)  # a window of ~6 resyncs; not a timing assertion: passes are counted
        passes = operator.state.passes - passes_before
        lists = {k: v - lists_before[k] for k, v in child_lists(cluster).items()}
        own = operator.state.api.list_calls - own_before
    finally:
        operator.stop()
    assert passes >= FLEET, f"only {passes} passes in the window: the test measured nothing"
    assert own == 0, f"the operator's client listed {own} times over {passes} passes"
    # The apiserver's counter covers every client of the shared test cluster (controllers, other
    # tests' leftovers, watches re-listing): about a dozen land in the window in a full run. The
    # passes themselves listed 4 each before the cache, 16 times this bound.
    assert sum(lists.values()) <= passes // 4, f"LISTs on the apiserver over {passes} passes: {lists}"
