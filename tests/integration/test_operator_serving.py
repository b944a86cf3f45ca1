"""The operator against the real control plane: a GrokDeployment becomes replica groups of pods
on kwok GPU nodes, scales by whole groups, rolls group by group, recreates a group that lost a
pod, and leaves nothing behind when deleted.

Each test has its own namespace; one operator (in-process, `test_operator_support.py`) serves the
module.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from test_operator_support import Kube, manifest, small, wait_for

from grok_operator import constants as c
from grok_worker.contract import (
    CONFIG_FILE_NAME,
    DEFAULT_COORDINATOR_PORT,
    DEFAULT_HEALTH_PORT,
    Env,
    WorkerConfig,
)

pytestmark = pytest.mark.cluster


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_two_replicas_of_two_hosts_become_ready_on_gpu_nodes(kube: Kube, cluster: Any) -> None:
    kube.apply(manifest("serve", kube.namespace))
    gd = kube.wait_ready("serve", 2)
    ns = kube.namespace

    statefulsets = {s["metadata"]["name"]: s for s in kube.items("statefulsets")}
    assert sorted(statefulsets) == ["serve-g0", "serve-g1"]
    sts = statefulsets["serve-g1"]
    assert sts["spec"]["replicas"] == 2
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["metadata"]["ownerReferences"][0]["uid"] == gd["metadata"]["uid"]
    container = sts["spec"]["template"]["spec"]["containers"][0]
    env = _env(container)
    assert env[Env.COORDINATOR_ADDRESS] == f"serve-g1-0.serve-g1.{ns}.svc:{DEFAULT_COORDINATOR_PORT}"
    assert env[Env.NUM_PROCESSES] == "2"
    assert env[Env.LOCAL_DEVICE_COUNT] == "8"
    assert env[Env.MESH] == "data=1,expert=2,model=8"  # default: experts across hosts, model inside one
    assert env[Env.PROCESS_ID] == {
        "fieldRef": {"apiVersion": "v1", "fieldPath": f"metadata.labels['{c.LABEL_POD_INDEX}']"}
    }
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert container["readinessProbe"]["grpc"]["port"] == DEFAULT_HEALTH_PORT  # plaintext, beside a TLS API

    services = {s["metadata"]["name"]: s for s in kube.items("services")}
    assert services["serve-g0"]["spec"]["clusterIP"] == "None"
    assert services["serve-g0"]["spec"]["publishNotReadyAddresses"] is True
    assert services["serve"]["spec"]["selector"] == {c.LABEL_DEPLOYMENT: "serve", c.LABEL_POD_INDEX: "0"}

    config_map = kube.get("configmap", "serve-worker-config")
    assert config_map is not None
    config = WorkerConfig.model_validate_json(config_map["data"][CONFIG_FILE_NAME])
    assert config.model.preset == "grok-1"
    assert (config.mesh.expert, config.mesh.model) == (2, 8)

    pods = kube.pods("serve")
    assert len(pods) == 4
    gpu_nodes = set(cluster.gpu_nodes())
    assert all(p["spec"]["nodeName"] in gpu_nodes for p in pods)
    leaders = [p for p in pods if p["metadata"]["labels"][c.LABEL_POD_INDEX] == "0"]
    assert len(leaders) == 2

    status = gd["status"]
    assert status["endpoint"] == f"serve.{ns}.svc:50051"
    assert status["memoryPlan"]["fits"] is True
    ready = kube.condition("serve", "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Ready")
    printed = cluster.kubectl("get", "grokd", "serve", "-n", ns, "--no-headers").stdout.split()
    assert printed[:4] == ["serve", "2", "2", "Ready"]


def _ready_groups(kube: Kube, name: str) -> dict[str, set[str]]:
    """Group name -> uids of its pods, for groups whose every pod is Ready and not terminating."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for pod in kube.pods(name):
        groups.setdefault(pod["metadata"]["labels"][c.LABEL_GROUP], []).append(pod)
    ready = {}
    for group, pods in groups.items():
        ok = len(pods) == 2 and all(
            not p["metadata"].get("deletionTimestamp")
            and any(
                cd["type"] == "Ready" and cd["status"] == "True" for cd in p["status"].get("conditions", [])
            )
            for p in pods
        )
        if ok:
            ready[group] = {p["metadata"]["uid"] for p in pods}
    return ready


def test_kubectl_scale_adds_and_removes_whole_groups(kube: Kube, cluster: Any) -> None:
    kube.apply(small("scale", kube.namespace))
    kube.wait_ready("scale", 2)
    cluster.kubectl("scale", "grokdeployment/scale", "--replicas=3", "-n", kube.namespace)
    kube.wait_ready("scale", 3)
    assert sorted(s["metadata"]["name"] for s in kube.items("statefulsets")) == [
        "scale-g0",
        "scale-g1",
        "scale-g2",
    ]
    assert len(kube.pods("scale")) == 6
    selector = kube.gd("scale")["status"]["selector"]
    assert len(kube.items("pods", selector)) == 3, "the scale selector matches the leaders only"

    cluster.kubectl("scale", "grokdeployment/scale", "--replicas=1", "-n", kube.namespace)
    kube.wait_ready("scale", 1)
    wait_for("pods of removed groups to go", lambda: len(kube.pods("scale")) == 2)
    assert [s["metadata"]["name"] for s in kube.items("statefulsets")] == ["scale-g0"]
    assert sorted(s["metadata"]["name"] for s in kube.items("services")) == ["scale", "scale-g0"]


@pytest.mark.parametrize(
    ("max_unavailable", "max_surge", "min_ready"),
    [(1, 0, 2), (0, 1, 3)],
    ids=["maxUnavailable 1 keeps two of three groups serving", "maxSurge 1 keeps all three groups serving"],
)
def test_an_image_change_rolls_group_by_group_within_the_limits(
    kube: Kube, max_unavailable: int, max_surge: int, min_ready: int
) -> None:
    rollout = {"maxUnavailable": max_unavailable, "maxSurge": max_surge}
    kube.apply(small("roll", kube.namespace, replicas=3, rollout=rollout))
    kube.wait_ready("roll", 3)
    kube.apply(
        small("roll", kube.namespace, replicas=3, rollout=rollout, image="example.invalid/grok-worker:v2")
    )

    fewest_ready = 3
    most_groups = 3
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        fewest_ready = min(fewest_ready, len(_ready_groups(kube, "roll")))
        most_groups = max(most_groups, len(kube.items("statefulsets")))
        status = kube.gd("roll").get("status", {})
        images = {
            p["spec"]["containers"][0]["image"]
            for p in kube.pods("roll")
            if not p["metadata"].get("deletionTimestamp")
        }
        done = (
            status.get("phase") == "Ready"
            and status.get("updatedReplicas") == 3
            and status.get("replicas") == 3
        )
        if done and images == {"example.invalid/grok-worker:v2"}:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"rollout did not finish: {json.dumps(kube.gd('roll').get('status'))}")
    assert fewest_ready >= min_ready, f"only {fewest_ready} groups were ready at one point"
    assert most_groups <= 3 + max_surge
    rolled = [e for e in kube.events("roll") if e["reason"] == c.EventReason.GROUP_ROLLED]
    assert len(rolled) == 3, [e["message"] for e in rolled]
    wait_for("surge groups to go", lambda: len(kube.items("statefulsets")) == 3)


def test_losing_one_pod_recreates_the_whole_group(kube: Kube) -> None:
    kube.apply(small("heal", kube.namespace))
    kube.wait_ready("heal", 2)
    before = _ready_groups(kube, "heal")
    kube.cluster.kubectl("delete", "pod", "heal-g0-1", "-n", kube.namespace, "--wait=false")

    def recreated() -> bool:
        now = _ready_groups(kube, "heal")
        return "heal-g0" in now and not (now["heal-g0"] & before["heal-g0"])

    wait_for("every pod of group heal-g0 to be replaced", recreated, 60)
    kube.wait_ready("heal", 2)
    assert _ready_groups(kube, "heal")["heal-g1"] == before["heal-g1"], "the healthy group was left alone"
    events = [e for e in kube.events("heal") if e["reason"] == c.EventReason.GROUP_RECREATED]
    assert events, "an Event says the group was recreated"
    assert "heal-g0" in events[0]["message"]
    assert events[0]["type"] == "Warning"


def test_deleting_the_grokdeployment_garbage_collects_every_child(kube: Kube, cluster: Any) -> None:
    kube.apply(small("gone", kube.namespace))
    kube.wait_ready("gone", 2)
    cluster.kubectl("delete", "grokdeployment", "gone", "-n", kube.namespace, "--wait=true", timeout=60)

    def nothing_left() -> bool:
        selector = f"{c.LABEL_DEPLOYMENT}=gone"
        return all(
            not kube.items(kind, selector) for kind in ("statefulsets", "services", "configmaps", "pods")
        )

    wait_for("the garbage collector to remove every child", nothing_left, 60)


def test_switching_the_client_service_to_headless_and_back_replaces_it(kube: Kube) -> None:
    """spec.serving.clientService: the apiserver adds or removes a ClusterIP only on creation, so
    the operator replaces the Service, says so in an Event, and the deployment stays Ready."""
    kube.apply(small("front", kube.namespace))
    kube.wait_ready("front", 2)
    before = kube.get("service", "front")
    assert before is not None
    assert before["spec"]["clusterIP"] not in ("", "None")

    kube.apply(small("front", kube.namespace, serving={"clientService": "Headless"}))

    def headless() -> dict[str, Any] | None:
        svc = kube.get("service", "front")
        return svc if svc is not None and svc["spec"].get("clusterIP") == "None" else None

    after = wait_for("the client Service to be headless", headless)
    assert after["metadata"]["uid"] != before["metadata"]["uid"]
    assert after["spec"]["selector"] == before["spec"]["selector"]
    kube.wait_ready("front", 2)
    selector = "kubernetes.io/service-name=front"
    wait_for(
        "the headless Service's EndpointSlice to list both leaders",
        lambda: sum(len(s.get("endpoints") or []) for s in kube.items("endpointslices", selector)) == 2,
    )
    reasons = [e["reason"] for e in kube.events("front")]
    assert c.EventReason.SERVICE_REPLACED in reasons

    kube.apply(small("front", kube.namespace))

    def with_cluster_ip() -> dict[str, Any] | None:
        svc = kube.get("service", "front")
        return svc if svc is not None and svc["spec"].get("clusterIP") not in (None, "", "None") else None

    back = wait_for("the client Service to have a ClusterIP again", with_cluster_ip)
    assert back["metadata"]["uid"] != after["metadata"]["uid"]
    kube.wait_ready("front", 2)
