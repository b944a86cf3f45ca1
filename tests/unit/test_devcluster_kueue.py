"""How the devcluster wires the real Kueue to a loopback control plane (pure, no cluster): the CRDs
and webhook registrations taken from Kueue's module source and rewritten to URL clientConfigs on
127.0.0.1, and its Configuration. The module source here is a miniature of the real layout; the
real one is exercised by tests/integration/test_kueue_admission.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from grok_devcluster.kueue import (
    MANAGED_LABEL,
    MANAGED_VALUE,
    KueuePorts,
    configuration,
    converted_crd_names,
    crd_documents,
    webhook_configurations,
)

URL = "https://127.0.0.1:9443"


def crd(name: str) -> dict[str, Any]:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": name}, "spec": {"group": "kueue.x-k8s.io", "versions": []}}  # fmt: skip


def webhook(name: str, path: str, group: str, resource: str) -> dict[str, Any]:
    return {
        "name": name,
        "clientConfig": {"service": {"name": "webhook-service", "namespace": "system", "path": path}},
        "rules": [
            {"apiGroups": [group], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": [resource]}
        ],
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
    }


def module(tmp_path: Path) -> Path:
    crds = tmp_path / "config" / "components" / "crd"
    (crds / "bases").mkdir(parents=True)
    (crds / "patches").mkdir()
    for name in ("workloads", "resourceflavors"):
        (crds / "bases" / f"kueue.x-k8s.io_{name}.yaml").write_text(
            yaml.safe_dump(crd(f"{name}.kueue.x-k8s.io"))
        )
    patch = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
             "metadata": {"name": "workloads.kueue.x-k8s.io"},
             "spec": {"conversion": {"strategy": "Webhook", "webhook": {"clientConfig": {"service": {}}}}}}  # fmt: skip
    (crds / "patches" / "webhook_in_workloads.yaml").write_text(yaml.safe_dump(patch))
    (crds / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": [], "patches": [{"path": "patches/webhook_in_workloads.yaml"}]})
    )
    hooks = tmp_path / "config" / "components" / "webhook"
    hooks.mkdir(parents=True)
    mutating = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "mutating-webhook-configuration"},
        "webhooks": [
            webhook("mpod.kb.io", "/mutate--v1-pod", "", "pods"),
            webhook("mjob.kb.io", "/mutate-batch-v1-job", "batch", "jobs"),
            webhook(
                "mworkload.kb.io", "/mutate-kueue-x-k8s-io-v1beta2-workload", "kueue.x-k8s.io", "workloads"
            ),
        ],
    }
    (hooks / "manifests.yaml").write_text(yaml.safe_dump(mutating))
    return tmp_path


def test_only_the_crds_the_release_converts_get_a_url_conversion_webhook(tmp_path: Path) -> None:
    source = module(tmp_path)
    assert converted_crd_names(source) == {"workloads.kueue.x-k8s.io"}
    by_name = {doc["metadata"]["name"]: doc for doc in crd_documents(source, URL, "Q0E=")}
    conversion = by_name["workloads.kueue.x-k8s.io"]["spec"]["conversion"]
    assert conversion["webhook"]["clientConfig"] == {"url": f"{URL}/convert", "caBundle": "Q0E="}
    assert "conversion" not in by_name["resourceflavors.kueue.x-k8s.io"]["spec"]


def test_webhooks_are_kept_for_pods_and_kueues_kinds_and_registered_by_url(tmp_path: Path) -> None:
    [config] = webhook_configurations(module(tmp_path), URL, "Q0E=")
    assert config["metadata"]["name"] == "kueue-mutating-webhook-configuration"
    hooks = {hook["name"]: hook for hook in config["webhooks"]}
    assert set(hooks) == {"mpod.kb.io", "mworkload.kb.io"}  # no batch/job: that integration is off
    assert hooks["mpod.kb.io"]["clientConfig"] == {"url": f"{URL}/mutate--v1-pod", "caBundle": "Q0E="}


def test_only_labelled_namespaces_send_their_pods_to_kueue(tmp_path: Path) -> None:
    hooks = {h["name"]: h for h in webhook_configurations(module(tmp_path), URL, "Q0E=")[0]["webhooks"]}
    assert hooks["mpod.kb.io"]["namespaceSelector"] == {"matchLabels": {MANAGED_LABEL: MANAGED_VALUE}}
    assert "namespaceSelector" not in hooks["mworkload.kb.io"]


def test_the_configuration_serves_on_loopback_with_the_pod_integration_only() -> None:
    config = configuration(KueuePorts(webhook=9443, health=8081), Path("/run/certs"))
    assert config["webhook"] == {"host": "127.0.0.1", "port": 9443, "certDir": "/run/certs"}
    assert config["health"]["healthProbeBindAddress"] == "127.0.0.1:8081"
    assert config["integrations"]["frameworks"] == ["pod"]
    assert config["managedJobsNamespaceSelector"] == {"matchLabels": {MANAGED_LABEL: MANAGED_VALUE}}
    assert config["internalCertManagement"] == {"enable": False}
    assert config["leaderElection"] == {"leaderElect": False}
