"""The chart's Kueue integration (`kueue.enabled=true`) grants exactly what a queued group needs.

`helm install` in namespaced mode with kueue.enabled -> the operator run locally with the installed
Deployment's arguments, as the chart's ServiceAccount, through the recording proxy of
test_chart_support -> a GrokDeployment on a LocalQueue whose ClusterQueue has no GPU quota waits
for admission -> its status quotes Kueue's reason (read from the Workload) -> no call was refused,
and the Kueue rule the chart adds is used. The rest of the chart's RBAC is proven exact by
test_chart_install.py; this file adds the one rule that only the Kueue integration uses.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_chart_support import RecordingProxy, granted_triples, kubeconfig_for_proxy, used_triples
from test_operator_support import install_crd, manifest, wait_for

from grok_devcluster.demo import free_port, operator_argv
from grok_operator import constants as c
from grok_operator.admission import NOT_PERMITTED

REPO = Path(__file__).resolve().parents[2]
CHART = str(REPO / "charts" / "grok-operator")
KUEUE_RULE = ("kueue.x-k8s.io", "workloads", "get")

pytestmark = pytest.mark.cluster


@dataclass(frozen=True)
class Installed:
    proxy: RecordingProxy
    rules: list[dict[str, Any]]


@pytest.fixture
def installed(cluster: Any, kueue_namespace: str, tmp_path: Path) -> Iterator[Installed]:
    """The chart installed for `kueue_namespace` with kueue.enabled, its operator running."""
    release = f"grok-kueue-{os.getpid()}"
    release_ns = f"{release}-system"
    install_crd(cluster)
    cluster.helm(
        "install", release, CHART, "--namespace", release_ns, "--create-namespace",
        "--set", f"fullnameOverride={release}", "--set", f"watch.namespaces={{{kueue_namespace}}}",
        "--set", "kueue.enabled=true",
    )  # fmt: skip
    proxy: RecordingProxy | None = None
    proc: subprocess.Popen[bytes] | None = None
    try:
        token = cluster.kubectl("create", "token", release, "-n", release_ns, "--duration=1h").stdout.strip()
        config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
        ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"])
        proxy = RecordingProxy(config["clusters"][0]["cluster"]["server"], token, ca)
        kubeconfig = tmp_path / "operator-kubeconfig"
        kubeconfig.write_text(kubeconfig_for_proxy(proxy.start()))
        deployment = json.loads(
            cluster.kubectl("get", "deployment", release, "-n", release_ns, "-o", "json").stdout
        )
        port = free_port()
        log = open(tmp_path / "operator.log", "ab")  # noqa: SIM115 (owned by the child)
        operator = proc = subprocess.Popen(
            operator_argv(deployment, port),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        )

        def healthy() -> bool:
            assert operator.poll() is None, (tmp_path / "operator.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_for("the operator's /healthz", healthy, 60)
        yield Installed(proxy, granted_rules(cluster, release, kueue_namespace))
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proxy is not None:
            proxy.stop()
        cluster.kubectl("patch", c.PLURAL, "waiting", "-n", kueue_namespace, "--type=merge",
                        "-p", '{"metadata":{"finalizers":null}}', check=False)  # fmt: skip
        cluster.helm("uninstall", release, "--namespace", release_ns, check=False)
        cluster.kubectl("delete", "namespace", release_ns, "--wait=false", check=False)


def granted_rules(cluster: Any, release: str, namespace: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    selector = f"app.kubernetes.io/instance={release}"
    for kind, ns in (("clusterrole", ""), ("role", namespace)):
        args = ["get", kind, "-l", selector, "-o", "json", *(["-n", ns] if ns else [])]
        for item in json.loads(cluster.kubectl(*args).stdout)["items"]:
            rules.extend(item["rules"])
    return rules


def test_a_queued_group_reports_kueues_reason_through_the_charts_kueue_rbac(
    cluster: Any, kueue_namespace: str, installed: Installed
) -> None:
    queue = [
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ResourceFlavor", "metadata": {"name": kueue_namespace}},
        {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "ClusterQueue",
            "metadata": {"name": kueue_namespace},
            "spec": {
                "namespaceSelector": {},
                "resourceGroups": [{
                    "coveredResources": ["nvidia.com/gpu"],
                    "flavors": [{"name": kueue_namespace, "resources": [{"name": "nvidia.com/gpu", "nominalQuota": 0}]}],
                }],
            },
        },
        {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
         "metadata": {"name": "grok", "namespace": kueue_namespace}, "spec": {"clusterQueue": kueue_namespace}},
    ]  # fmt: skip
    cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(o) for o in queue))
    try:
        body = manifest("waiting", kueue_namespace, replicas=1, queueName="grok")
        cluster.kubectl("apply", "-f", "-", input=json.dumps(body))

        def reason() -> str | None:
            out = cluster.kubectl("get", c.PLURAL, "waiting", "-n", kueue_namespace, "-o", "json").stdout
            for cond in json.loads(out).get("status", {}).get("conditions", []):
                if cond["type"] == "Ready" and cond["reason"] == c.Reason.WAITING_FOR_ADMISSION:
                    return str(cond["message"]) if "nvidia.com/gpu" in cond["message"] else None
            return None

        message = wait_for("the queued group to report Kueue's reason", reason, 90)
        assert NOT_PERMITTED not in message
        denied = [call for call in installed.proxy.calls if call.rbac_denied]
        assert denied == []
        assert KUEUE_RULE in used_triples(installed.proxy.calls)
        assert KUEUE_RULE in granted_triples(installed.rules)
    finally:
        cluster.kubectl("delete", c.PLURAL, "waiting", "-n", kueue_namespace, "--wait=false", check=False)
        for kind in ("clusterqueue", "resourceflavor"):
            cluster.kubectl("delete", kind, kueue_namespace, "--wait=false", check=False)
