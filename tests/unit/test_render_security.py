"""Restricted worker pods, Secret mounts, the worker config's security section and the
NetworkPolicy of each replica group (pure renderers, no cluster)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from grok_operator.render import Owner, statefulset, worker_config
from grok_operator.render.networkpolicy import network_policy
from grok_operator.render.security import STEP_PORT, group_secret_name
from grok_operator.validation import ValidSpec, validate
from grok_worker.contract import (
    DEFAULT_COORDINATOR_PORT,
    DEFAULT_HEALTH_PORT,
    GROUP_SECRET_MOUNT_DIR,
    TLS_CLIENT_CA_MOUNT_DIR,
    TLS_MOUNT_DIR,
    TOKENS_MOUNT_DIR,
    Env,
    GroupEnv,
)
from grok_worker.server.config import ResolvedConfig
from grok_worker.server.main import _step_port

OWNER = Owner(name="chat", namespace="serving", uid="uid-123")


def valid(**spec: Any) -> ValidSpec:
    base: dict[str, Any] = {
        "replicas": 2,
        "model": {"preset": "tiny", "checkpoint": {"hostPath": {"path": "/m"}}},
        "topology": {"hostsPerReplica": 2, "gpusPerHost": 1, "gpuMemory": "16Gi"},
    }
    base.update(spec)
    result = validate(base, name=OWNER.name)
    assert isinstance(result, ValidSpec), result
    return result


def pod(v: ValidSpec, index: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = statefulset(OWNER, v, index)["spec"]["template"]["spec"]
    return result


def mounts(v: ValidSpec) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in pod(v)["containers"][0]["volumeMounts"]}


def volumes(v: ValidSpec, index: int = 0) -> dict[str, dict[str, Any]]:
    return {vol["name"]: vol for vol in pod(v, index)["volumes"]}


def test_worker_pods_are_restricted_by_default_with_the_images_uid() -> None:
    spec = pod(valid())
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    context = spec["containers"][0]["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}


def test_the_uid_gid_and_fs_group_can_be_overridden_but_never_to_root() -> None:
    spec = pod(valid(podSecurity={"runAsUser": 1000, "runAsGroup": 2000, "fsGroup": 3000}))
    assert {k: spec["securityContext"][k] for k in ("runAsUser", "runAsGroup", "fsGroup")} == {
        "runAsUser": 1000,
        "runAsGroup": 2000,
        "fsGroup": 3000,
    }
    refused = validate({**valid().spec.model_dump(by_alias=True), "podSecurity": {"runAsUser": 0}})
    assert not isinstance(refused, ValidSpec)
    assert [p.field for p in refused] == ["spec.podSecurity.runAsUser"]


def test_only_tmp_home_and_a_size_limited_dev_shm_are_writable() -> None:
    v = valid(sharedMemorySize="2Gi")
    vols = volumes(v)
    assert vols["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "2Gi"}
    assert mounts(v)["dshm"] == "/dev/shm"
    assert mounts(v)["tmp"] == "/tmp"
    container = pod(v)["containers"][0]
    home = next(e["value"] for e in container["env"] if e["name"] == "HOME")
    assert mounts(v)["home"] == home
    writable = {m["name"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"dshm", "tmp", "home"}
    assert all("emptyDir" in vols[name] for name in writable)


def test_probes_use_the_health_port_which_the_pod_declares_and_the_pod_ip_is_in_the_env() -> None:
    container = pod(valid())["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": DEFAULT_HEALTH_PORT}
    assert {"name": "health", "containerPort": DEFAULT_HEALTH_PORT, "protocol": "TCP"} in container["ports"]
    pod_ip = next(e for e in container["env"] if e["name"] == Env.POD_IP)
    assert pod_ip["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert worker_config(valid()).security.health_port == DEFAULT_HEALTH_PORT


def test_each_group_mounts_its_own_step_key_and_the_config_points_at_it() -> None:
    v = valid()
    for index in (0, 1):
        secret = volumes(v, index)["group-key"]["secret"]
        assert secret["secretName"] == group_secret_name("chat", index) == f"chat-g{index}-step-key"
        assert secret["defaultMode"] == 0o440
    assert mounts(v)["group-key"] == GROUP_SECRET_MOUNT_DIR
    assert worker_config(v).security.group_secret_file == f"{GROUP_SECRET_MOUNT_DIR}/step-key"


def test_a_one_host_group_has_no_step_channel_so_no_step_key_is_mounted_or_configured() -> None:
    v = valid(topology={"hostsPerReplica": 1, "gpusPerHost": 1, "gpuMemory": "16Gi"})
    assert "group-key" not in volumes(v)
    assert "group-key" not in mounts(v)
    assert worker_config(v).security.group_secret_file == ""


def test_without_tls_or_auth_nothing_else_is_mounted_and_the_api_is_plaintext() -> None:
    v = valid()
    assert "tls" not in volumes(v)
    assert "tokens" not in volumes(v)
    security = worker_config(v).security
    assert not security.tls.enabled
    assert security.tokens_dir == ""


def test_tls_mounts_cert_and_key_and_client_ca_only_when_the_secret_has_it() -> None:
    v = valid(serving={"tls": {"secretName": "chat-tls"}, "auth": {"tokenSecretName": "chat-tokens"}})
    tls = volumes(v)["tls"]["secret"]
    assert tls["secretName"] == "chat-tls"
    assert [item["key"] for item in tls["items"]] == ["tls.crt", "tls.key"]
    config = worker_config(v).security
    assert (config.tls.cert_file, config.tls.key_file, config.tls.client_ca_file) == (
        f"{TLS_MOUNT_DIR}/tls.crt",
        f"{TLS_MOUNT_DIR}/tls.key",
        "",
    )
    mutual = dataclasses.replace(v, tls_client_ca=True)
    assert [item["key"] for item in volumes(mutual)["tls"]["secret"]["items"]] == [
        "tls.crt",
        "tls.key",
        "ca.crt",
    ]
    assert worker_config(mutual).security.tls.client_ca_file == f"{TLS_MOUNT_DIR}/ca.crt"
    # Tokens: the whole Secret, no items list, so the kubelet updates the files in place.
    tokens = volumes(v)["tokens"]["secret"]
    assert tokens["secretName"] == "chat-tokens"
    assert "items" not in tokens
    assert mounts(v)["tokens"] == TOKENS_MOUNT_DIR
    assert config.tokens_dir == TOKENS_MOUNT_DIR


def test_a_client_ca_of_its_own_is_mounted_from_its_secret_without_the_tls_secrets_ca() -> None:
    tls = {"secretName": "chat-tls", "clientCASecretName": "clients-ca"}
    v = dataclasses.replace(valid(serving={"tls": tls}), tls_client_ca=True)
    assert [item["key"] for item in volumes(v)["tls"]["secret"]["items"]] == ["tls.crt", "tls.key"]
    own = volumes(v)["tls-client-ca"]["secret"]
    # Only ca.crt: a CA's own Secret also holds its private key.
    assert own == {
        "secretName": "clients-ca",
        "defaultMode": 0o440,
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    read_only = {m["name"]: m.get("readOnly") for m in pod(v)["containers"][0]["volumeMounts"]}
    assert (mounts(v)["tls-client-ca"], read_only["tls-client-ca"]) == (TLS_CLIENT_CA_MOUNT_DIR, True)
    assert worker_config(v).security.tls.client_ca_file == f"{TLS_CLIENT_CA_MOUNT_DIR}/ca.crt"
    # Until the pass has found the CA Secret (tls_client_ca unset) nothing of it is mounted.
    pending = valid(serving={"tls": tls})
    assert "tls-client-ca" not in volumes(pending)
    assert worker_config(pending).security.tls.client_ca_file == ""


def _rules(policy: dict[str, Any]) -> dict[int, list[dict[str, Any]] | None]:
    """port -> the rule's `from` (None: from anywhere)."""
    out: dict[int, list[dict[str, Any]] | None] = {}
    for rule in policy["spec"]["ingress"]:
        for port in rule["ports"]:
            assert port["protocol"] == "TCP"
            out[port["port"]] = rule.get("from")
    return out


def test_the_network_policy_admits_coordinator_and_step_only_from_the_groups_own_pods() -> None:
    policy = network_policy(OWNER, valid(), 1)
    group = {"serving.grok.dev/deployment": "chat", "serving.grok.dev/group": "chat-g1"}
    assert policy["metadata"]["name"] == "chat-g1"
    assert policy["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid
    assert policy["spec"]["podSelector"] == {"matchLabels": group}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    rules = _rules(policy)
    assert rules[DEFAULT_COORDINATOR_PORT] == rules[STEP_PORT] == [{"podSelector": {"matchLabels": group}}]
    assert rules[DEFAULT_HEALTH_PORT] is None  # kubelet probes come from the node
    assert rules[50051] is None
    assert rules[8000] is None
    assert rules[9090] == [{"namespaceSelector": {}}]  # metrics: any namespace by default


def test_the_network_policy_takes_api_peers_and_the_metrics_namespaces_from_the_spec() -> None:
    peers = [
        {"namespaceSelector": {"matchLabels": {"team": "apps"}}},
        {"podSelector": {"matchLabels": {"role": "gateway"}}},
    ]
    monitoring = {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    v = valid(
        serving={"http": {"enabled": False}},
        networkPolicy={"apiFrom": peers, "metricsNamespaceSelector": monitoring},
    )
    rules = _rules(network_policy(OWNER, v, 0))
    assert rules[50051] == peers
    assert 8000 not in rules
    assert rules[9090] == [{"namespaceSelector": monitoring}]


def test_the_operators_step_port_is_the_one_the_worker_opens() -> None:
    group = GroupEnv(
        coordinator_address=f"chat-g0-0.chat-g0.serving.svc:{DEFAULT_COORDINATOR_PORT}", num_processes=2
    )
    config = ResolvedConfig(worker=worker_config(valid()), group=group, buckets=(8,))
    assert _step_port(argparse.Namespace(step_port=None), config) == STEP_PORT
