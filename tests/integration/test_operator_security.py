"""The operator's security children against the real control plane (kwok nodes):

- in a namespace that enforces the restricted Pod Security Standard, the apiserver admits the
  worker pods the StatefulSet controller creates (and refuses a plain pod, to show it enforces);
- each replica group gets a NetworkPolicy as specified, removed when spec.networkPolicy is off;
- each group gets its step-key Secret once: the same object and key across many passes, mounted
  by the group's pods;
- a missing TLS Secret is reported in the Ready condition with the field and the fix, and the
  group is rendered with TLS once the Secret exists;
- spec.serving.tls.clientCertificates: None serves server-only TLS from a Secret with ca.crt, an
  unknown value is refused by the apiserver, unset defaults to Auto (mutual TLS, the groups roll),
  and Required refuses a Secret that lost ca.crt while the running group keeps its config;
- a client CA Secret of its own (clientCASecretName) is reported while missing, then only its ca.crt
  is mounted; with clientCertificates None the apiserver refuses it.

One in-process operator serves the module (resync every 2 s). Cost: ~40 s on 2 cores.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_operator_support import Kube, small, wait_for

from grok_operator import constants as c
from grok_operator.runtime import OperatorThread
from grok_worker.contract import (
    CONFIG_FILE_NAME,
    DEFAULT_COORDINATOR_PORT,
    DEFAULT_HEALTH_PORT,
    DEFAULT_STEP_PORT,
    WorkerConfig,
)

pytestmark = pytest.mark.cluster

STEP_PORT = DEFAULT_STEP_PORT


def _restrict(kube: Kube) -> None:
    kube.cluster.kubectl(
        "label", "namespace", kube.namespace,
        "pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/enforce-version=latest",
    )  # fmt: skip


def _checkpoint_claim(kube: Kube, name: str) -> dict[str, Any]:
    """A PersistentVolumeClaim bound to a PersistentVolume made for it: the restricted standard
    refuses hostPath volumes in pods, so a checkpoint there comes through a claim."""
    volume = f"{kube.namespace}-{name}"
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": volume},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "",
            "hostPath": {"path": "/models/tiny"},
            "claimRef": {"namespace": kube.namespace, "name": name},
        },
    }
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": kube.namespace},
        "spec": {
            "accessModes": ["ReadOnlyMany"],
            "storageClassName": "",
            "volumeName": volume,
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    kube.apply(pv)
    kube.apply(pvc)
    return {"preset": "tiny", "checkpoint": {"pvc": {"claimName": name}}}


def test_the_restricted_pod_security_standard_admits_the_worker_pods(kube: Kube) -> None:
    _restrict(kube)
    model = _checkpoint_claim(kube, "weights")
    plain = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "plain", "namespace": kube.namespace},
        "spec": {"containers": [{"name": "c", "image": "example.invalid/plain"}]},
    }
    refused = kube.cluster.kubectl("apply", "-f", "-", input=json.dumps(plain), check=False)
    assert refused.returncode != 0
    assert "violates PodSecurity" in refused.stderr, refused.stderr

    try:
        kube.apply(small("strict", kube.namespace, replicas=2, model=model))
        kube.wait_ready("strict", 2)
    finally:
        failed = [e["message"] for e in kube.items("events") if e.get("reason") == "FailedCreate"]
        kube.cluster.kubectl("delete", "pv", f"{kube.namespace}-weights", "--wait=false", check=False)
    assert failed == []
    pods = kube.pods("strict")
    assert sorted(p["metadata"]["name"] for p in pods) == [
        "strict-g0-0",
        "strict-g0-1",
        "strict-g1-0",
        "strict-g1-1",
    ]
    for pod in pods:
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        container = pod["spec"]["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True


def _policies(kube: Kube) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in kube.items("networkpolicies")}


def _ports(policy: dict[str, Any]) -> dict[int, Any]:
    return {port["port"]: rule.get("from") for rule in policy["spec"]["ingress"] for port in rule["ports"]}


def test_each_group_gets_its_network_policy_and_turning_it_off_removes_them(kube: Kube) -> None:
    peers = [{"namespaceSelector": {"matchLabels": {"team": "apps"}}}]
    kube.apply(small("fenced", kube.namespace, replicas=2, networkPolicy={"apiFrom": peers}))
    kube.wait_ready("fenced", 2)
    policies = wait_for("two NetworkPolicies", lambda: len(_policies(kube)) == 2 and _policies(kube))
    assert sorted(policies) == ["fenced-g0", "fenced-g1"]
    gd = kube.gd("fenced")
    for index in (0, 1):
        policy = policies[f"fenced-g{index}"]
        group = {c.LABEL_DEPLOYMENT: "fenced", c.LABEL_GROUP: f"fenced-g{index}"}
        assert policy["metadata"]["ownerReferences"][0]["uid"] == gd["metadata"]["uid"]
        assert policy["spec"]["podSelector"] == {"matchLabels": group}
        ports = _ports(policy)
        assert ports[DEFAULT_COORDINATOR_PORT] == [{"podSelector": {"matchLabels": group}}]
        assert ports[STEP_PORT] == [{"podSelector": {"matchLabels": group}}]
        assert ports[50051] == peers
        assert ports[DEFAULT_HEALTH_PORT] is None
        assert ports[9090] == [{"namespaceSelector": {}}]

    kube.apply(small("fenced", kube.namespace, replicas=2, networkPolicy={"enabled": False}))
    wait_for("the NetworkPolicies to be removed", lambda: _policies(kube) == {}, 30)
    assert len(kube.items("statefulsets")) == 2


def _step_keys(kube: Kube) -> dict[str, tuple[str, str, str]]:
    """name -> (uid, resourceVersion, key) of every step-key Secret."""
    return {
        s["metadata"]["name"]: (s["metadata"]["uid"], s["metadata"]["resourceVersion"], s["data"]["step-key"])
        for s in kube.items("secrets", f"{c.LABEL_DEPLOYMENT}=keyed")
    }


def test_each_group_step_key_is_created_once_stays_the_same_and_is_mounted(
    kube: Kube, operator: OperatorThread
) -> None:
    kube.apply(small("keyed", kube.namespace, replicas=2))
    kube.wait_ready("keyed", 2)
    first = _step_keys(kube)
    assert sorted(first) == ["keyed-g0-step-key", "keyed-g1-step-key"]
    assert first["keyed-g0-step-key"][2] != first["keyed-g1-step-key"][2]
    # Several passes (resync every 2 s, and a scale-up that makes the operator act) change nothing.
    kube.cluster.kubectl("scale", "grokdeployment/keyed", "-n", kube.namespace, "--replicas=3")
    kube.wait_ready("keyed", 3)
    later = _step_keys(kube)
    assert {name: later[name] for name in first} == first
    assert "keyed-g2-step-key" in later
    for pod in kube.pods("keyed"):
        group = pod["metadata"]["labels"][c.LABEL_GROUP]
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert volumes["group-key"]["secret"]["secretName"] == f"{group}-step-key"


def test_a_missing_tls_secret_is_reported_then_used_once_created(kube: Kube) -> None:
    kube.apply(small("secure", kube.namespace, replicas=1, serving={"tls": {"secretName": "secure-tls"}}))

    def refused() -> dict[str, Any]:
        return kube.condition("secure", "Ready") if kube.condition("secure", "Ready").get("reason") else {}

    ready = wait_for("the SecretNotFound condition", refused, 30)
    assert ready["reason"] == c.Reason.SECRET_NOT_FOUND
    assert "spec.serving.tls.secretName" in ready["message"]
    assert "kubectl create secret tls secure-tls" in ready["message"]
    assert kube.items("statefulsets") == []

    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": "secure-tls", "namespace": kube.namespace},
        # Not a real certificate: the operator only checks which keys exist, kwok runs no worker.
        "stringData": {"tls.crt": "cert", "tls.key": "key", "ca.crt": "ca"},
    }
    kube.apply(secret)
    kube.wait_ready("secure", 1)
    config_map = kube.get("configmap", "secure-worker-config")
    assert config_map is not None
    config = WorkerConfig.model_validate_json(config_map["data"][CONFIG_FILE_NAME])
    assert config.security.tls.client_ca_file.endswith("/ca.crt")
    pod = kube.pods("secure")[0]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "secure-tls"


def _tls_secret(kube: Kube, name: str, **data: str) -> None:
    """A kubernetes.io/tls Secret whose values are placeholders: the operator only reads its keys.
    Deleted first: `kubectl apply` cannot drop a key written through stringData (it lands in data)."""
    kube.cluster.kubectl("delete", "secret", name, "-n", kube.namespace, "--ignore-not-found")
    meta = {"name": name, "namespace": kube.namespace}
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": meta,
            "stringData": data,
        }
    )


def _client_ca_file(kube: Kube, name: str) -> str:
    config_map = kube.get("configmap", f"{name}-worker-config")
    assert config_map is not None
    return WorkerConfig.model_validate_json(config_map["data"][CONFIG_FILE_NAME]).security.tls.client_ca_file


def test_client_certificates_turn_mutual_tls_off_on_and_keep_it_required(kube: Kube) -> None:
    _tls_secret(kube, "issued-tls", **{"tls.crt": "cert", "tls.key": "key", "ca.crt": "ca"})

    def deployment(**tls: str) -> dict[str, Any]:
        return small(
            "issued", kube.namespace, replicas=1, serving={"tls": {"secretName": "issued-tls", **tls}}
        )

    # None: server-only TLS although the Secret has ca.crt (as cert-manager's CA issuers write it).
    kube.apply(deployment(clientCertificates="None"))
    kube.wait_ready("issued", 1)
    assert _client_ca_file(kube, "issued") == ""
    pod_volumes = {v["name"]: v for v in kube.pods("issued")[0]["spec"]["volumes"]}
    assert [item["key"] for item in pod_volumes["tls"]["secret"]["items"]] == ["tls.crt", "tls.key"]

    # The apiserver refuses a value the API does not have, naming the field and the values it has.
    body = json.dumps(deployment(clientCertificates="Optional"))
    refused = kube.cluster.kubectl("apply", "-f", "-", input=body, check=False)
    assert refused.returncode != 0
    assert "spec.serving.tls.clientCertificates" in refused.stderr, refused.stderr
    assert '"Auto", "Required", "None"' in refused.stderr, refused.stderr

    # Unset: the apiserver defaults it to Auto, and the groups roll to mutual TLS.
    kube.apply(deployment())
    assert kube.gd("issued")["spec"]["serving"]["tls"]["clientCertificates"] == "Auto"
    wait_for(
        "mutual TLS in the worker config", lambda: _client_ca_file(kube, "issued").endswith("/ca.crt"), 30
    )
    kube.wait_ready("issued", 1)

    # Required: a Secret that loses ca.crt is refused, and the running group keeps its config.
    kube.apply(deployment(clientCertificates="Required"))
    kube.wait_ready("issued", 1)
    statefulset = kube.get("statefulset", "issued-g0")
    assert statefulset is not None
    _tls_secret(kube, "issued-tls", **{"tls.crt": "cert", "tls.key": "key"})

    def refusal() -> dict[str, Any]:
        ready = kube.condition("issued", "Ready")
        return ready if ready.get("reason") == c.Reason.INVALID_SPEC else {}

    ready = wait_for("the InvalidSpec condition", refusal, 60)
    assert "spec.serving.tls.clientCertificates" in ready["message"], ready
    assert _client_ca_file(kube, "issued").endswith("/ca.crt")
    after = kube.get("statefulset", "issued-g0")
    assert after is not None
    assert after["metadata"]["resourceVersion"] == statefulset["metadata"]["resourceVersion"]


def test_a_client_ca_secret_of_its_own_is_waited_for_then_mounted_and_none_is_refused_with_it(
    kube: Kube,
) -> None:
    _tls_secret(kube, "own-tls", **{"tls.crt": "cert", "tls.key": "key"})
    tls = {"secretName": "own-tls", "clientCASecretName": "own-clients-ca"}
    kube.apply(small("own", kube.namespace, replicas=1, serving={"tls": tls}))

    def refused() -> dict[str, Any]:
        ready = kube.condition("own", "Ready")
        return ready if ready.get("reason") == c.Reason.SECRET_NOT_FOUND else {}

    ready = wait_for("the SecretNotFound condition", refused, 30)
    assert "spec.serving.tls.clientCASecretName" in ready["message"], ready
    assert kube.items("statefulsets", f"{c.LABEL_DEPLOYMENT}=own") == []

    # The CA's own Secret, key included, as cert-manager keeps a CA: only ca.crt reaches the pod.
    _tls_secret(kube, "own-clients-ca", **{"tls.crt": "ca", "tls.key": "ca-key", "ca.crt": "ca"})
    kube.wait_ready("own", 1)
    assert _client_ca_file(kube, "own") == "/var/run/grok/tls-client-ca/ca.crt"
    pod_volumes = {v["name"]: v for v in kube.pods("own")[0]["spec"]["volumes"]}
    assert pod_volumes["tls-client-ca"]["secret"]["secretName"] == "own-clients-ca"
    assert [item["key"] for item in pod_volumes["tls-client-ca"]["secret"]["items"]] == ["ca.crt"]

    # A client CA and no client certificates contradict each other: the apiserver's CEL rule says so.
    body = small("own", kube.namespace, replicas=1, serving={"tls": {**tls, "clientCertificates": "None"}})
    result = kube.cluster.kubectl("apply", "-f", "-", input=json.dumps(body), check=False)
    assert result.returncode != 0
    assert "spec.serving.tls.clientCASecretName" in result.stderr, result.stderr
    assert "clientCertificates cannot be None" in result.stderr, result.stderr
