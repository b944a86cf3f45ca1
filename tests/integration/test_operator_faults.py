"""The operator under broken input and a broken cluster, against the real control plane.

Each case is a fault a user or the cluster can cause; each ends in a status that says what is
wrong (or in the fault being repaired), with nothing lost, nothing orphaned and no hot loop:
- specs the apiserver stores but whose children it would refuse (names, ports, tolerations,
  quantities, paths): InvalidSpec naming the field; what only the apiserver can tell (a malformed
  affinity): RefusedByApiServer with the server's message, an Event, and no retry while unchanged;
- a StatefulSet scaled by hand and an emptied ConfigMap: put back, with a DriftCorrected Event;
- a missing ServiceAccount or PriorityClass: the StatefulSet controller's own message in the Ready
  condition (PodCreationFailed); a missing PVC: the scheduler's (Unschedulable);
- a large scale-up: created in steps under the create rate limit, the step visible in status;
- replicas above the schema maximum: refused by the apiserver;
- the API server killed and restarted after 20 s: the operator carries on;
- a GrokDeployment, then the CRD itself, deleted: every loop ends, no child is left behind.
Runtime: about 2 minutes (the 20 s outage and the operator's watch reconnects dominate).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from test_operator_support import Kube, install_crd, small, start_operator, wait_for

from grok_operator import constants as c
from grok_operator.ratelimit import CreateLimits
from grok_operator.runtime import OperatorThread

pytestmark = pytest.mark.cluster

#: Group creations the operator of this module allows: slow enough that a scale-up shows steps.
LIMITS = CreateLimits(rate=5.0, burst=5, per_deployment_rate=0.5, per_deployment_burst=2)


@pytest.fixture(scope="module")
def operator(cluster: Any) -> Iterator[OperatorThread]:
    install_crd(cluster)
    running = start_operator(cluster, create_limits=LIMITS)
    try:
        yield running
    finally:
        running.stop()


def _ready_condition(kube: Kube, name: str, reason: str, timeout: float = 60) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        cond = kube.condition(name, "Ready")
        return cond if cond.get("reason") == reason else None

    return wait_for(f"{name}'s Ready condition to say {reason}", probe, timeout)


def _quiet(kube: Kube, operator: OperatorThread, name: str) -> None:
    """No write for `name`'s namespace over more than one resync: no hot loop."""
    version = kube.gd(name)["metadata"]["resourceVersion"]
    writes = operator.state.api.writes_in(kube.namespace)
    time.sleep(2.5)
    assert kube.gd(name)["metadata"]["resourceVersion"] == version
    assert operator.state.api.writes_in(kube.namespace) == writes, list(operator.state.api.recent_writes)[-5:]


def _children(kube: Kube) -> list[str]:
    selector = f"{c.LABEL_MANAGED_BY}={c.MANAGED_BY}"
    out = kube.cluster.kubectl(
        "get", "statefulsets,services,configmaps,pods", "-n", kube.namespace, "-l", selector, "-o", "name"
    ).stdout
    return out.split()


CHILD_REFUSALS = [
    ("my.model", {}, "metadata.name"),
    ("1model", {}, "metadata.name"),
    ("port-metrics", {"serving": {"port": 9090}}, "spec.serving.metricsPort"),
    ("port-coord", {"serving": {"port": 8476}}, "spec.serving.port"),
    ("tol", {"tolerations": [{"key": "a", "operator": "Sometimes"}]}, "spec.tolerations[0].operator"),
    ("qty", {"resources": {"requests": {"cpu": "lots"}}}, "spec.resources.requests.cpu"),
    ("gpu-name", {"topology": {"hostsPerReplica": 1, "gpusPerHost": 1, "gpuResourceName": "nvidia.com/g p u"}}, "gpuResourceName"),
    ("escape", {"model": {"preset": "tiny", "checkpoint": {"hostPath": {"path": "/m"}, "path": "../../etc"}}}, "checkpoint.path"),
    ("passwd", {"model": {"preset": "tiny", "checkpoint": {"hostPath": {"path": "/m"}}, "tokenizerPath": "/etc/passwd"}}, "tokenizerPath"),
]  # fmt: skip


def test_specs_whose_children_would_be_refused_end_in_a_status_naming_the_field(
    kube: Kube, operator: OperatorThread
) -> None:
    for name, spec, _ in CHILD_REFUSALS:
        kube.apply(small(name, kube.namespace, replicas=1, **spec))
    for name, _, field in CHILD_REFUSALS:
        ready = _ready_condition(kube, name, c.Reason.INVALID_SPEC)
        assert field in ready["message"], (name, ready["message"])
        assert any(e["reason"] == c.Reason.INVALID_SPEC for e in kube.events(name)), name
    assert _children(kube) == []
    _quiet(kube, operator, "my.model")


def test_a_child_the_apiserver_refuses_is_reported_with_its_message_and_not_retried(
    kube: Kube, operator: OperatorThread
) -> None:
    # An affinity with no node selector term: only the apiserver's validation knows this rule.
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}
    kube.apply(small("aff", kube.namespace, replicas=1, affinity=affinity))
    ready = _ready_condition(kube, "aff", c.Reason.REFUSED_BY_API_SERVER)
    assert "spec.affinity" in ready["message"], ready["message"]
    assert "nodeSelectorTerms" in ready["message"], ready["message"]
    assert "HTTP 422" in ready["message"]
    assert kube.gd("aff")["status"]["phase"] == "Invalid"
    assert any(e["reason"] == c.Reason.REFUSED_BY_API_SERVER for e in kube.events("aff"))
    assert kube.items("statefulsets") == []
    _quiet(kube, operator, "aff")
    # Fixing the spec is picked up at once.
    kube.apply(small("aff", kube.namespace, replicas=1))
    kube.wait_ready("aff", 1)


def test_children_changed_by_hand_are_put_back(kube: Kube) -> None:
    kube.apply(small("drift", kube.namespace, replicas=1))
    kube.wait_ready("drift", 1)
    kube.cluster.kubectl("scale", "statefulset/drift-g0", "--replicas=3", "-n", kube.namespace)
    kube.cluster.kubectl(
        "set", "image", "statefulset/drift-g0", "worker=example.invalid/other:1", "-n", kube.namespace
    )
    kube.cluster.kubectl(
        "patch",
        "service",
        "drift",
        "-n",
        kube.namespace,
        "--type=merge",
        "-p",
        '{"spec":{"selector":{"x":"y"}}}',
    )
    kube.cluster.kubectl(
        "patch", "configmap", "drift-worker-config", "-n", kube.namespace, "--type=json",
        "-p", json.dumps([{"op": "remove", "path": "/data"}]),
    )  # fmt: skip

    def restored() -> bool:
        sts, cm = kube.get("statefulset", "drift-g0"), kube.get("configmap", "drift-worker-config")
        svc = kube.get("service", "drift")
        return bool(
            sts
            and cm
            and svc
            and sts["spec"]["replicas"] == 2
            and sts["spec"]["template"]["spec"]["containers"][0]["image"]
            == "example.invalid/grok-worker:test"
            and cm.get("data")
            and "x" not in svc["spec"]["selector"]
        )

    wait_for("the StatefulSet, the ConfigMap and the Service to be put back", restored, 30)
    events = [e for e in kube.events("drift") if e["reason"] == c.EventReason.DRIFT_CORRECTED]
    assert {"StatefulSet drift-g0", "ConfigMap drift-worker-config", "Service drift"} <= {
        " ".join(e["message"].split()[:2]) for e in events
    }, [e["message"] for e in events]
    kube.wait_ready("drift", 1)


#: (name, spec, the controller's words, the reason): pods the StatefulSet controller cannot create
#: (PodCreationFailed) and a pod the scheduler cannot place (Unschedulable).
MISSING_DEPENDENCIES = [
    ("nosa", {"serviceAccountName": "missing"}, 'serviceaccount "missing" not found',
     c.Reason.POD_CREATION_FAILED),
    ("nopc", {"priorityClassName": "missing"}, "no PriorityClass with name missing was found",
     c.Reason.POD_CREATION_FAILED),
    ("nopvc", {"model": {"preset": "tiny", "checkpoint": {"pvc": {"claimName": "missing"}}}},
     'persistentvolumeclaim "missing" not found', c.Reason.UNSCHEDULABLE),
]  # fmt: skip


def test_missing_dependencies_reach_the_status_in_the_controllers_own_words(kube: Kube) -> None:
    for name, spec, _, _ in MISSING_DEPENDENCIES:
        kube.apply(small(name, kube.namespace, replicas=1, **spec))
    for name, _, words, reason in MISSING_DEPENDENCIES:
        ready = _ready_condition(kube, name, reason, timeout=90)
        assert words in ready["message"], ready["message"]
        status = kube.gd(name)["status"]
        assert status["phase"] == "Unschedulable"
        assert [g["state"] for g in status["groups"]] == [
            "PodCreationFailed" if reason == c.Reason.POD_CREATION_FAILED else "Unschedulable"
        ]


def test_replicas_above_the_schema_maximum_are_refused(kube: Kube) -> None:
    body = small("many", kube.namespace, replicas=10000)
    result = kube.cluster.kubectl("apply", "-f", "-", input=json.dumps(body), check=False)
    assert result.returncode != 0
    assert "spec.replicas" in result.stderr, result.stderr


def test_a_scale_up_progresses_in_steps_under_the_create_limit(kube: Kube) -> None:
    kube.apply(small("steps", kube.namespace, replicas=6, topology={"hostsPerReplica": 1, "gpusPerHost": 1}))

    def a_step() -> str | None:
        message = kube.condition("steps", "Ready").get("message", "")
        return message if "scaling to 6 replica groups (now 2)" in message else None

    wait_for("the status to show the first step of 2 groups", a_step, 30, interval=0.1)
    kube.wait_ready("steps", 6, timeout=120)


def test_the_operator_carries_on_after_the_api_server_is_down_for_20_seconds(
    kube: Kube, devcluster: Any
) -> None:
    from grok_devcluster.outage import restart_apiserver

    kube.apply(small("outage", kube.namespace, replicas=1))
    kube.wait_ready("outage", 1)
    restart_apiserver(devcluster, down_seconds=20.0, die_with_parent=True)
    kube.cluster.kubectl("scale", "grokdeployment/outage", "--replicas=2", "-n", kube.namespace)
    kube.wait_ready("outage", 2, timeout=180)
    assert len(kube.items("statefulsets")) == 2


def test_a_spec_turned_invalid_keeps_the_endpoint_of_the_groups_still_serving(kube: Kube) -> None:
    kube.apply(small("keep", kube.namespace, replicas=1))
    endpoint = kube.wait_ready("keep", 1)["status"]["endpoint"]
    assert endpoint
    kube.apply(small("keep", kube.namespace, replicas=1, serving={"port": 9090}))
    _ready_condition(kube, "keep", c.Reason.INVALID_SPEC)
    status = kube.gd("keep")["status"]
    assert status["endpoint"] == endpoint
    assert status["readyReplicas"] == 1
    assert len(kube.items("statefulsets")) == 1


def test_deleting_a_namespace_ends_its_loops_and_completes(
    cluster: Any, kube: Kube, operator: OperatorThread
) -> None:
    kube.apply(small("ns", kube.namespace, replicas=1))
    kube.wait_ready("ns", 1)
    cluster.kubectl("delete", "namespace", kube.namespace, "--wait=false")
    wait_for("the loop of ns to end", lambda: (kube.namespace, "ns") not in operator.state.wakers, 60)

    def namespace_gone() -> bool:
        return cluster.kubectl("get", "namespace", kube.namespace, check=False).returncode != 0

    wait_for("the namespace to be gone (no finalizer left behind)", namespace_gone, 90)


def test_a_deleted_grokdeployments_loop_ends_and_leaves_nothing(kube: Kube, operator: OperatorThread) -> None:
    kube.apply(small("gone", kube.namespace, replicas=1))
    kube.wait_ready("gone", 1)
    kube.cluster.kubectl("delete", "grokdeployment", "gone", "-n", kube.namespace, "--timeout=60s")
    wait_for("the loop of gone to end", lambda: (kube.namespace, "gone") not in operator.state.wakers, 30)
    wait_for("every child of gone to go", lambda: _children(kube) == [], 60)
    writes = operator.state.api.writes_in(kube.namespace)
    time.sleep(2.5)
    assert operator.state.api.writes_in(kube.namespace) == writes


def test_deleting_the_crd_ends_every_loop_and_leaves_no_object(
    cluster: Any, kube: Kube, operator: OperatorThread
) -> None:
    """Last in this module: the CRD is installed again afterwards for the modules that follow."""
    for name in ("a", "b"):
        kube.apply(small(name, kube.namespace, replicas=1))
    kube.wait_ready("a", 1)
    kube.wait_ready("b", 1)
    try:
        cluster.kubectl("delete", "crd", c.CRD_NAME, "--timeout=90s")
        wait_for("every loop to end", lambda: not operator.state.wakers, 60)
        wait_for("every child to go", lambda: _children(kube) == [], 60)
        writes = operator.state.api.writes
        time.sleep(2.5)
        assert operator.state.api.writes == writes, list(operator.state.api.recent_writes)[-5:]
        assert _children(kube) == []
    finally:
        install_crd(cluster)
