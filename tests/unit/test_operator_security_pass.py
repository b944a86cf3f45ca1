"""The reconcile pass and the Secrets and NetworkPolicies of a GrokDeployment (in-memory API):
step keys created once and never rewritten, a missing TLS or token Secret reported with the field
and the fix, mutual TLS from ca.crt (per spec.serving.tls.clientCertificates), policies removed when turned off, reserved ports refused."""

from __future__ import annotations

import base64
from typing import Any

from test_operator_reconcile import NAME, MemoryApi, body, run

from grok_operator import constants as c
from grok_operator.reconcile import DeploymentMemory, Reconciler
from grok_operator.security_children import RECHECK_SECONDS
from grok_worker.contract import CONFIG_FILE_NAME, WorkerConfig


def secret(name: str, **data: str) -> dict[str, Any]:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    return {"kind": "Secret", "metadata": {"name": name, "labels": {}}, "data": encoded}


def add(api: MemoryApi, obj: dict[str, Any]) -> None:
    api.objects[(obj["kind"], obj["metadata"]["name"])] = obj


def ready_condition(api: MemoryApi) -> dict[str, Any]:
    return next(cond for cond in api.status["conditions"] if cond["type"] == "Ready")


def config(api: MemoryApi) -> WorkerConfig:
    data = api.objects[("ConfigMap", f"{NAME}-worker-config")]["data"][CONFIG_FILE_NAME]
    return WorkerConfig.model_validate_json(data)


def test_each_group_gets_a_random_step_key_once_and_it_is_never_rewritten() -> None:
    api, memory = MemoryApi(), DeploymentMemory()
    run(api, memory)
    keys = {i: api.objects[("Secret", f"{NAME}-g{i}-step-key")]["data"]["step-key"] for i in (0, 1)}
    assert all(len(bytes.fromhex(base64.b64decode(key).decode())) == 32 for key in keys.values())
    assert keys[0] != keys[1]
    api.run_pods()
    for _ in range(3):
        assert not [w for w in run(api, memory) if "Secret" in w]
    run(api, memory, replicas=3)
    assert {i: api.objects[("Secret", f"{NAME}-g{i}-step-key")]["data"]["step-key"] for i in (0, 1)} == keys


def test_a_missing_tls_secret_is_reported_with_the_field_and_the_fix_and_nothing_is_created() -> None:
    api, memory = MemoryApi(), DeploymentMemory()
    writes = run(api, memory, serving={"tls": {"secretName": "chat-tls"}})
    assert sorted(writes) == [f"event {c.Reason.SECRET_NOT_FOUND}", "patch status"]
    ready = ready_condition(api)
    assert ready["status"] == "False"
    assert ready["reason"] == c.Reason.SECRET_NOT_FOUND
    assert "spec.serving.tls.secretName" in ready["message"]
    assert "kubectl create secret tls chat-tls" in ready["message"]
    assert api.status["phase"] == c.Phase.INVALID
    # Created: the next pass serves it, with the certificate and key but no client CA.
    add(api, secret("chat-tls", **{"tls.crt": "cert", "tls.key": "key"}))
    run(api, memory, serving={"tls": {"secretName": "chat-tls"}})
    assert ("StatefulSet", f"{NAME}-g0") in api.objects
    assert config(api).security.tls.enabled
    assert config(api).security.tls.client_ca_file == ""


def test_a_ca_crt_in_the_tls_secret_turns_on_client_certificates() -> None:
    api, memory = MemoryApi(), DeploymentMemory()
    add(api, secret("chat-tls", **{"tls.crt": "cert", "tls.key": "key", "ca.crt": "ca"}))
    run(api, memory, serving={"tls": {"secretName": "chat-tls"}})
    assert config(api).security.tls.client_ca_file.endswith("/ca.crt")


def tls_volume_keys(api: MemoryApi) -> list[str]:
    volumes = api.objects[("StatefulSet", f"{NAME}-g0")]["spec"]["template"]["spec"]["volumes"]
    tls = next(volume for volume in volumes if volume["name"] == "tls")
    return [item["key"] for item in tls["secret"]["items"]]


def test_client_certificates_none_serves_server_only_tls_from_a_secret_with_a_ca_crt() -> None:
    api, memory = MemoryApi(), DeploymentMemory()
    add(api, secret("chat-tls", **{"tls.crt": "cert", "tls.key": "key", "ca.crt": "ca"}))
    run(api, memory, serving={"tls": {"secretName": "chat-tls", "clientCertificates": "None"}})
    assert config(api).security.tls.enabled
    assert config(api).security.tls.client_ca_file == ""
    assert tls_volume_keys(api) == ["tls.crt", "tls.key"]
    # Auto (the default) with the same Secret: mutual TLS, a new pod template, the CA mounted.
    template = api.objects[("StatefulSet", f"{NAME}-g0")]["spec"]["template"]["metadata"]["labels"]
    run(api, memory, serving={"tls": {"secretName": "chat-tls"}})
    assert config(api).security.tls.client_ca_file.endswith("/ca.crt")
    assert tls_volume_keys(api) == ["tls.crt", "tls.key", "ca.crt"]
    rolled = api.objects[("StatefulSet", f"{NAME}-g0")]["spec"]["template"]["metadata"]["labels"]
    assert rolled[c.LABEL_TEMPLATE_HASH] != template[c.LABEL_TEMPLATE_HASH]


def test_client_certificates_required_refuses_a_secret_that_lost_its_ca_and_leaves_the_groups_alone() -> None:
    api, memory = MemoryApi(), DeploymentMemory()
    tls = {"tls": {"secretName": "chat-tls", "clientCertificates": "Required"}}
    add(api, secret("chat-tls", **{"tls.crt": "cert", "tls.key": "key", "ca.crt": "ca"}))
    run(api, memory, serving=tls)
    api.run_pods()
    run(api, memory, serving=tls)
    assert api.status["phase"] == c.Phase.READY
    statefulset = api.objects[("StatefulSet", f"{NAME}-g0")]
    add(api, secret("chat-tls", **{"tls.crt": "cert", "tls.key": "key"}))
    writes = run(api, memory, serving=tls)
    assert sorted(writes) == [f"event {c.Reason.INVALID_SPEC}", "patch status"]
    ready = ready_condition(api)
    assert ready["reason"] == c.Reason.INVALID_SPEC
    assert "spec.serving.tls.clientCertificates" in ready["message"]
    assert "add the client CA to it as ca.crt" in ready["message"]
    assert api.objects[("StatefulSet", f"{NAME}-g0")] is statefulset
    assert config(api).security.tls.client_ca_file.endswith("/ca.crt")


def test_a_client_ca_secret_of_its_own_is_required_found_and_checked_for_its_ca_crt() -> None:
    api, memory = MemoryApi(), DeploymentMemory()
    tls = {"tls": {"secretName": "chat-tls", "clientCASecretName": "clients-ca"}}
    add(api, secret("chat-tls", **{"tls.crt": "cert", "tls.key": "key", "ca.crt": "server-ca"}))
    run(api, memory, serving=tls)
    ready = ready_condition(api)
    assert ready["reason"] == c.Reason.SECRET_NOT_FOUND
    assert "spec.serving.tls.clientCASecretName" in ready["message"]
    assert "kubectl create secret generic clients-ca" in ready["message"]
    assert ("StatefulSet", f"{NAME}-g0") not in api.objects
    add(api, secret("clients-ca", **{"tls.crt": "ca", "tls.key": "ca-key"}))
    run(api, memory, serving=tls)
    assert ready_condition(api)["reason"] == c.Reason.INVALID_SPEC
    assert "has no ca.crt" in ready_condition(api)["message"]
    add(api, secret("clients-ca", **{"ca.crt": "ca"}))
    run(api, memory, serving=tls)
    assert config(api).security.tls.client_ca_file.endswith("tls-client-ca/ca.crt")
    assert tls_volume_keys(api) == ["tls.crt", "tls.key"]


def test_a_missing_or_empty_token_secret_is_reported() -> None:
    api, memory = MemoryApi(), DeploymentMemory()
    run(api, memory, serving={"auth": {"tokenSecretName": "chat-tokens"}})
    assert "spec.serving.auth.tokenSecretName" in ready_condition(api)["message"]
    add(api, secret("chat-tokens"))
    run(api, memory, serving={"auth": {"tokenSecretName": "chat-tokens"}})
    ready = ready_condition(api)
    assert ready["reason"] == c.Reason.INVALID_SPEC
    assert "holds no token" in ready["message"]
    add(api, secret("chat-tokens", alice="t0ken"))
    run(api, memory, serving={"auth": {"tokenSecretName": "chat-tokens"}})
    assert config(api).security.tokens_dir


def test_network_policies_follow_the_groups_and_go_when_turned_off() -> None:
    api, memory = MemoryApi(), DeploymentMemory()
    run(api, memory, replicas=3)
    policies = lambda: sorted(n for (k, n) in api.objects if k == "NetworkPolicy")  # noqa: E731
    assert policies() == [f"{NAME}-g0", f"{NAME}-g1", f"{NAME}-g2"]
    run(api, memory, replicas=1)
    assert policies() == [f"{NAME}-g0"]
    run(api, memory, replicas=1, networkPolicy={"enabled": False})
    assert policies() == []


def test_a_port_the_pod_reserves_cannot_be_given_to_the_api() -> None:
    api, memory = MemoryApi(), DeploymentMemory()
    run(api, memory, serving={"port": 8081})
    ready = ready_condition(api)
    assert ready["reason"] == c.Reason.INVALID_SPEC
    assert "spec.serving.port: port 8081 is also the health-probe port" in ready["message"]


class CountingApi(MemoryApi):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append(f"get {kind} {name}")
        return super().get(kind, namespace, name)

    def list(self, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        self.reads.append(f"list {kind}")
        return super().list(kind, namespace, label_selector)


def test_one_host_groups_get_no_step_key_secret() -> None:
    api, memory = MemoryApi(), DeploymentMemory()
    run(api, memory, topology={"hostsPerReplica": 1, "gpusPerHost": 1, "gpuMemory": "16Gi"})
    assert [name for kind, name in api.objects if kind == "Secret"] == []
    assert ("StatefulSet", f"{NAME}-g0") in api.objects


def test_new_groups_create_their_keys_unread_existing_keys_are_reread_every_interval_policies_never() -> None:
    api, memory = CountingApi(), DeploymentMemory()
    reconciler = Reconciler(api)

    def at(now: float, **spec: Any) -> list[str]:
        api.reads.clear()
        reconciler.reconcile(body(api, **spec), memory, now=now, now_iso="2026-01-01T00:01:00Z")
        return [r for r in api.reads if "Secret" in r or "NetworkPolicy" in r]

    assert at(100.0) == []  # new groups: each key is POSTed straight away, nothing read
    assert ("Secret", f"{NAME}-g0-step-key") in api.objects
    assert ("NetworkPolicy", f"{NAME}-g1") in api.objects
    key = api.objects[("Secret", f"{NAME}-g0-step-key")]
    del api.objects[("Secret", f"{NAME}-g0-step-key")]
    del api.objects[("NetworkPolicy", f"{NAME}-g1")]
    assert at(100.0 + RECHECK_SECONDS / 2) == []  # an event burst: no key read again
    assert ("NetworkPolicy", f"{NAME}-g1") in api.objects  # policies come from the children: put back at once
    assert at(100.0 + RECHECK_SECONDS / 2, replicas=3) == []  # g2 is new: created, not read
    assert ("Secret", f"{NAME}-g2-step-key") in api.objects
    assert at(100.0 + RECHECK_SECONDS / 2 + 1) == []
    assert ("NetworkPolicy", f"{NAME}-g2") not in api.objects  # back to two groups: its policy goes
    assert at(100.0 + RECHECK_SECONDS, replicas=3) == [
        f"get Secret {NAME}-g0-step-key",
        f"get Secret {NAME}-g1-step-key",
    ]  # due again for the groups that exist: the lost key is made anew
    assert api.objects[("Secret", f"{NAME}-g0-step-key")]["data"] != key["data"]
