"""The renderers turn a spec into children (pure, no cluster): table-driven, one sentence per case."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest

from grok_operator import constants as c
from grok_operator.render import Owner, render_children, statefulset, template_hash, worker_config
from grok_operator.render.common import render_hash
from grok_operator.render.config import CHECKPOINT_MOUNT_DIR, config_map
from grok_operator.render.services import client_service, endpoint, headless_service
from grok_operator.render.statefulset import (
    STARTUP_BASE_SECONDS,
    STARTUP_PERIOD_SECONDS,
    STARTUP_READ_BYTES_PER_SECOND,
    startup_failure_threshold,
)
from grok_operator.validation import ValidSpec, validate
from grok_worker.contract import CONFIG_FILE_NAME, CONFIG_MOUNT_DIR, Env, MeshSpec, WorkerConfig

OWNER = Owner(name="chat", namespace="serving", uid="uid-123")


def valid(**spec: Any) -> ValidSpec:
    base: dict[str, Any] = {
        "replicas": 2,
        "model": {"preset": "grok-1", "checkpoint": {"pvc": {"claimName": "weights"}, "path": "grok-1"}},
        "topology": {"hostsPerReplica": 2, "gpusPerHost": 8},
    }
    base.update(spec)
    result = validate(base, name=OWNER.name)
    assert isinstance(result, ValidSpec), result
    return result


def sts(v: ValidSpec, index: int = 1) -> dict[str, Any]:
    return statefulset(OWNER, v, index)


def container(v: ValidSpec, index: int = 1) -> dict[str, Any]:
    result: dict[str, Any] = sts(v, index)["spec"]["template"]["spec"]["containers"][0]
    return result


def env(v: ValidSpec, index: int = 1) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(v, index)["env"]}


def pod_spec(v: ValidSpec) -> dict[str, Any]:
    result: dict[str, Any] = sts(v)["spec"]["template"]["spec"]
    return result


CASES: list[tuple[str, Callable[[], object], object]] = [
    ("a group has one pod per host", lambda: sts(valid())["spec"]["replicas"], 2),
    (
        "the pods of a group start in parallel",
        lambda: sts(valid())["spec"]["podManagementPolicy"],
        "Parallel",
    ),
    (
        "the operator, not the controller, replaces pods",
        lambda: sts(valid())["spec"]["updateStrategy"],
        {"type": "OnDelete"},
    ),
    ("the StatefulSet is named after the group", lambda: sts(valid(), 3)["metadata"]["name"], "chat-g3"),
    (
        "the StatefulSet uses the group's headless service",
        lambda: sts(valid(), 3)["spec"]["serviceName"],
        "chat-g3",
    ),
    (
        "the selector picks one group's pods",
        lambda: sts(valid(), 1)["spec"]["selector"]["matchLabels"],
        {c.LABEL_DEPLOYMENT: "chat", c.LABEL_GROUP: "chat-g1"},
    ),
    (
        "the coordinator is host 0 of the group via the headless service",
        lambda: env(valid())[Env.COORDINATOR_ADDRESS],
        "chat-g1-0.chat-g1.serving.svc:8476",
    ),
    ("the group size is the hosts per replica", lambda: env(valid())[Env.NUM_PROCESSES], "2"),
    (
        "the host index comes from the pod-index label",
        lambda: env(valid())[Env.PROCESS_ID],
        {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}},
    ),
    ("each process owns its host's GPUs", lambda: env(valid())[Env.LOCAL_DEVICE_COUNT], "8"),
    (
        "the default mesh keeps the model axis inside a host and puts the experts across hosts",
        lambda: env(valid())[Env.MESH],
        "data=1,expert=2,model=8",
    ),
    (
        "the default mesh of one host puts every device on the model axis",
        lambda: env(valid(topology={"hostsPerReplica": 1, "gpusPerHost": 8}))[Env.MESH],
        "data=1,expert=1,model=8",
    ),
    (
        "an explicit mesh is passed through",
        lambda: env(
            valid(topology={"hostsPerReplica": 2, "gpusPerHost": 8, "mesh": {"data": 2, "model": 8}})
        )[Env.MESH],
        "data=2,expert=1,model=8",
    ),
    (
        "the config file path is the contract's",
        lambda: env(valid())[Env.CONFIG_FILE],
        f"{CONFIG_MOUNT_DIR}/{CONFIG_FILE_NAME}",
    ),
    (
        "the pod name comes from the downward API",
        lambda: env(valid())[Env.POD_NAME],
        {"fieldRef": {"fieldPath": "metadata.name"}},
    ),
    (
        "user env comes after the contract",
        lambda: container(valid(env=[{"name": "HF_HOME", "value": "/x"}]))["env"][-1],
        {"name": "HF_HOME", "value": "/x"},
    ),
    ("the worker runs `grok-worker serve`", lambda: container(valid())["command"], ["grok-worker", "serve"]),
    ("GPUs are requested", lambda: container(valid())["resources"]["requests"]["nvidia.com/gpu"], "8"),
    ("GPUs are limited", lambda: container(valid())["resources"]["limits"]["nvidia.com/gpu"], "8"),
    (
        "a custom GPU resource name is used",
        lambda: container(
            valid(topology={"gpusPerHost": 4, "gpuResourceName": "amd.com/gpu", "hostsPerReplica": 1})
        )["resources"]["limits"],
        {"amd.com/gpu": "4"},
    ),
    (
        "user resources are kept next to the GPUs",
        lambda: container(valid(resources={"requests": {"cpu": "16"}}))["resources"]["requests"],
        {"cpu": "16", "nvidia.com/gpu": "8"},
    ),
    (
        "readiness uses the native gRPC probe on the plaintext health port",
        lambda: container(valid())["readinessProbe"]["grpc"],
        {"port": 8081},
    ),
    (
        "liveness uses the native gRPC probe on the plaintext health port",
        lambda: container(valid())["livenessProbe"]["grpc"],
        {"port": 8081},
    ),
    (
        "the startup probe uses the health port, whatever the serving port",
        lambda: container(valid(serving={"port": 7000}))["startupProbe"]["grpc"],
        {"port": 8081},
    ),
    (
        "a PVC checkpoint is mounted read-only",
        lambda: pod_spec(valid())["volumes"][1],
        {"name": "checkpoint", "persistentVolumeClaim": {"claimName": "weights", "readOnly": True}},
    ),
    (
        "a hostPath checkpoint must be a directory",
        lambda: pod_spec(
            valid(model={"preset": "grok-1", "checkpoint": {"hostPath": {"path": "/data/grok"}}})
        )["volumes"][1],
        {"name": "checkpoint", "hostPath": {"path": "/data/grok", "type": "Directory"}},
    ),
    (
        "the worker config is mounted from the ConfigMap",
        lambda: pod_spec(valid())["volumes"][0]["configMap"],
        {"name": "chat-worker-config"},
    ),
    (
        "tolerations, node selector and scheduling knobs are passed through",
        lambda: {
            k: pod_spec(
                valid(
                    tolerations=[{"key": "gpu", "operator": "Exists"}],
                    nodeSelector={"pool": "h100"},
                    priorityClassName="serving",
                    schedulerName="volcano",
                )
            ).get(k)
            for k in ("tolerations", "nodeSelector", "priorityClassName", "schedulerName")
        },
        {
            "tolerations": [{"key": "gpu", "operator": "Exists"}],
            "nodeSelector": {"pool": "h100"},
            "priorityClassName": "serving",
            "schedulerName": "volcano",
        },
    ),
    ("unset pod knobs are left out", lambda: "affinity" in pod_spec(valid()), False),
    (
        "the grace period covers the drain",
        lambda: pod_spec(valid(serving={"drainGraceSeconds": 50}))["terminationGracePeriodSeconds"],
        60,
    ),
    (
        "the headless service is headless",
        lambda: headless_service(OWNER, valid(), 0)["spec"]["clusterIP"],
        "None",
    ),
    (
        "followers find the leader before it is ready",
        lambda: headless_service(OWNER, valid(), 0)["spec"]["publishNotReadyAddresses"],
        True,
    ),
    (
        "the client service selects leaders only",
        lambda: client_service(OWNER, valid())["spec"]["selector"],
        {c.LABEL_DEPLOYMENT: "chat", c.LABEL_POD_INDEX: "0"},
    ),
    (
        "the endpoint is the client service's DNS name and port",
        lambda: endpoint(OWNER, valid()),
        "chat.serving.svc:50051",
    ),
    (
        "the checkpoint path points inside the mounted volume",
        lambda: worker_config(valid()).model.checkpoint_path,
        f"{CHECKPOINT_MOUNT_DIR}/grok-1",
    ),
    (
        "the tokenizer path points inside the mounted volume",
        lambda: (
            worker_config(
                valid(
                    model={
                        "preset": "grok-1",
                        "checkpoint": {"hostPath": {"path": "/d"}},
                        "tokenizerPath": "tokenizer.model",
                    }
                )
            ).model.tokenizer_path
        ),
        f"{CHECKPOINT_MOUNT_DIR}/tokenizer.model",
    ),
    (
        "the KV length defaults to the model's maximum",
        lambda: worker_config(valid()).serving.max_seq_len,
        8192,
    ),
    (
        "serving limits reach the worker",
        lambda: worker_config(valid(serving={"maxBatch": 32, "maxQueue": 5})).serving.max_batch,
        32,
    ),
]


@pytest.mark.parametrize(("case", "render", "expected"), CASES, ids=[case for case, _, _ in CASES])
def test_render(case: str, render: Callable[[], object], expected: object) -> None:
    assert render() == expected


def test_a_one_host_group_has_no_headless_service_and_a_multi_host_group_has_one() -> None:
    one_host = render_children(OWNER, valid(topology={"hostsPerReplica": 1, "gpusPerHost": 8}), [0, 1])
    assert [g.service for g in one_host.groups] == [None, None]
    two_hosts = render_children(OWNER, valid(), [0])
    service = two_hosts.groups[0].service
    assert service is not None
    assert service["spec"]["clusterIP"] == "None"


def test_the_client_service_has_a_cluster_ip_unless_the_spec_asks_for_a_headless_one() -> None:
    default = render_children(OWNER, valid(), [0]).client_service
    headless = render_children(OWNER, valid(serving={"clientService": "Headless"}), [0]).client_service
    assert "clusterIP" not in default["spec"]  # the apiserver allocates one
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == default["spec"]["selector"]  # the leaders, either way
    assert headless["metadata"]["name"] == default["metadata"]["name"]  # status.endpoint is unchanged


def test_every_child_is_owned_by_the_grokdeployment_and_carries_a_render_hash() -> None:
    children = render_children(OWNER, valid(), [0, 1])
    objects = [children.config_map, children.client_service]
    for group in children.groups:
        assert group.service is not None
        objects += [group.service, group.statefulset]
    assert len(objects) == 6
    for obj in objects:
        ref = obj["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
            "GrokDeployment",
            "chat",
            "uid-123",
            True,
        )
        assert obj["metadata"]["labels"][c.LABEL_DEPLOYMENT] == "chat"
        assert render_hash(obj)


def test_rendering_twice_gives_identical_objects_and_hashes() -> None:
    first = render_children(OWNER, valid(), [0])
    second = render_children(OWNER, valid(), [0])
    assert json.dumps(first.groups[0].statefulset, sort_keys=True) == json.dumps(
        second.groups[0].statefulset, sort_keys=True
    )


def test_the_configmap_holds_the_worker_config_and_its_hash_is_on_the_pod_template() -> None:
    v = valid()
    cm = config_map(OWNER, v)
    config = WorkerConfig.model_validate_json(cm["data"][CONFIG_FILE_NAME])
    assert (config.mesh.expert, config.mesh.model) == (2, 8)
    assert config.model.quantization == "int8"
    other = valid(serving={"maxBatch": 16})
    annotation = c.ANNOTATION_CONFIG_HASH
    assert (
        sts(v)["spec"]["template"]["metadata"]["annotations"][annotation]
        != sts(other)["spec"]["template"]["metadata"]["annotations"][annotation]
    )


@pytest.mark.parametrize(
    ("case", "change", "rolls"),
    [
        ("a new image rolls the groups", {"image": "repo/worker:v2"}, True),
        ("a config change rolls the groups", {"serving": {"maxBatch": 16}}, True),
        ("new tolerations roll the groups", {"tolerations": [{"key": "x", "operator": "Exists"}]}, True),
        ("scaling does not roll the groups", {"replicas": 5}, False),
        ("a new rollout pace does not roll the groups", {"rollout": {"maxUnavailable": 2}}, False),
        ("a new failure policy does not roll the groups", {"failurePolicy": {"backoffSeconds": 60}}, False),
    ],
)
def test_the_template_hash_changes_exactly_when_pods_must_change(
    case: str, change: dict[str, Any], rolls: bool
) -> None:
    assert (template_hash(OWNER, valid(**change)) != template_hash(OWNER, valid())) is rolls


def test_the_pod_template_carries_the_template_hash_the_same_for_every_group() -> None:
    v = valid()
    labels = [sts(v, i)["spec"]["template"]["metadata"]["labels"][c.LABEL_TEMPLATE_HASH] for i in range(3)]
    assert labels == [template_hash(OWNER, v)] * 3


def test_the_startup_budget_grows_with_the_checkpoint_size() -> None:
    tiny = valid(
        model={"preset": "tiny", "checkpoint": {"hostPath": {"path": "/m"}}},
        topology={"hostsPerReplica": 1, "gpusPerHost": 1},
    )
    grok_one_host = valid(topology={"hostsPerReplica": 1, "gpusPerHost": 8})
    grok_two_hosts = valid(topology={"hostsPerReplica": 2, "gpusPerHost": 8})
    grok_bf16 = valid(
        model={"preset": "grok-1", "quantization": "bf16", "checkpoint": {"hostPath": {"path": "/m"}}},
        topology={"hostsPerReplica": 1, "gpusPerHost": 8},
    )
    assert startup_failure_threshold(tiny) == 31  # the 300 s base budget plus a few MB of weights
    assert startup_failure_threshold(grok_one_host) > startup_failure_threshold(grok_two_hosts) > 30
    # A bf16 worker reads the same int8 slices of the release files (it dequantizes after reading).
    assert startup_failure_threshold(grok_bf16) == startup_failure_threshold(grok_one_host)
    # The release's files (int8 experts and attention, float32 embedding) hold ~318 GB: ~1190 s at
    # 256 MiB/s on one host, plus the base: about 150 periods of 10 s.
    assert 140 <= startup_failure_threshold(grok_one_host) <= 160
    # Verifying digests reads every file whole once more on each host: ~1190 s more.
    verified = valid(
        model={"preset": "grok-1", "checkpoint": {"hostPath": {"path": "/m"}, "verify": True}},
        topology={"hostsPerReplica": 2, "gpusPerHost": 8},
    )
    extra = startup_failure_threshold(verified) - startup_failure_threshold(grok_two_hosts)
    assert 115 <= extra <= 122


def test_the_http_api_port_is_on_the_container_the_client_service_and_in_the_worker_config() -> None:
    on = valid(serving={"http": {"port": 8080}})
    ports = {p["name"]: p["containerPort"] for p in container(on)["ports"]}
    assert ports["http"] == 8080
    service_ports = {
        p["name"]: (p["port"], p["targetPort"]) for p in client_service(OWNER, on)["spec"]["ports"]
    }
    assert service_ports["http"] == (8080, "http")
    assert worker_config(on).serving.http_port == 8080
    assert valid().spec.serving.http.enabled  # on by default, on port 8000
    assert worker_config(valid()).serving.http_port == 8000
    off = valid(serving={"http": {"enabled": False}})
    assert "http" not in {p["name"] for p in container(off)["ports"]}
    assert "http" not in {p["name"] for p in client_service(OWNER, off)["spec"]["ports"]}
    assert worker_config(off).serving.http_port == 0


def test_the_startup_budget_is_the_plans_bytes_for_the_busiest_host() -> None:
    from grok_worker.shard_plan import host_read_bytes

    two_hosts = valid(topology={"hostsPerReplica": 2, "gpusPerHost": 8})
    assert two_hosts.mesh == MeshSpec(expert=2, model=8)  # default: model inside a host, experts across
    per_host = [host_read_bytes(two_hosts.model, two_hosts.mesh, 2, h) for h in range(2)]
    expected = STARTUP_BASE_SECONDS + max(per_host) / STARTUP_READ_BYTES_PER_SECOND
    assert startup_failure_threshold(two_hosts) == math.ceil(expected / STARTUP_PERIOD_SECONDS)
    # Each host reads its 4 experts and the replicated rest: a bit over half of the one-host read.
    whole = host_read_bytes(two_hosts.model, two_hosts.mesh, 1, 0)
    assert 0.5 < per_host[0] / whole < 0.6
