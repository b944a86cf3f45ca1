"""Every manifest in examples/ applied to the real control plane, reaching the state its comment claims.

Each example says `# Expected state: <Phase>, ...` in its header; the test reads that phase from the
file and waits for the GrokDeployment's status.phase to equal it, with the operator running locally
with the chart's rendered arguments (watching only the test's namespace). The conditions an example
names ("once the PVC below is bound and a node with 8 free GPUs exists") are set up the way a
cluster admin would: a PersistentVolume pre-bound to the example's claim, and the fake GPU nodes the
`cluster` fixture provides (whose taint the test tolerates; tiny-cpu.yaml carries that toleration
itself because the demo applies it as is). The 2-host example's claim that one 8×40 GB host is not enough is
checked too: the same spec squeezed onto one host is refused as InsufficientDeviceMemory.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from grok_devcluster.demo import free_port, operator_argv

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
CHART = str(REPO / "charts" / "grok-operator")
#: What a pod needs to land on the local control plane's fake (kwok) nodes.
KWOK_TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}

pytestmark = pytest.mark.cluster


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 120, interval_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f}s waiting for {what}"
        time.sleep(interval_s)


def expected_phase(path: Path) -> str:
    match = re.search(r"^# Expected state: (\w+)", path.read_text(), flags=re.M)
    assert match, f"{path.name}: its header must say `# Expected state: <Phase>` (what the test checks)"
    return match.group(1)


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture
def operator_namespace(cluster: Any, tmp_path: Path) -> Iterator[str]:
    """A fresh namespace with the operator watching it, started with the chart's rendered args."""
    namespace = f"examples-{os.getpid()}-{int(time.monotonic() * 1000) % 100000}"
    cluster.kubectl("create", "namespace", namespace)
    rendered = cluster.helm(
        "template",
        "rel",
        CHART,
        "--set",
        f"watch.namespaces={{{namespace}}}",
        "--show-only",
        "templates/deployment.yaml",
    ).stdout
    port = free_port()
    argv = operator_argv(yaml.safe_load(rendered), port)
    log = open(tmp_path / "operator.log", "wb")  # noqa: SIM115 (owned by the child)
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=cluster.env())

    def healthy() -> bool:
        assert proc.poll() is None, (tmp_path / "operator.log").read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    wait_for("the operator's /healthz", healthy, 60)
    try:
        yield namespace
        for doc in json.loads(
            cluster.kubectl("get", "grokdeployments", "-n", namespace, "-o", "json").stdout
        )["items"]:
            cluster.kubectl(
                "delete", "grokdeployment", doc["metadata"]["name"], "-n", namespace, "--timeout=60s"
            )
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def bind_claims(cluster: Any, namespace: str, docs: list[dict[str, Any]]) -> list[str]:
    """A PersistentVolume pre-bound to each claim of the example (what an admin provisions)."""
    names = []
    for claim in (d for d in docs if d["kind"] == "PersistentVolumeClaim"):
        name = f"{namespace}-{claim['metadata']['name']}"[:63]
        pv = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]},
                "accessModes": claim["spec"]["accessModes"],
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": "",
                "hostPath": {"path": "/var/lib/grok/checkpoints"},
                "claimRef": {"namespace": namespace, "name": claim["metadata"]["name"]},
            },
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(pv))
        names.append(name)
    return names


def status_of(cluster: Any, namespace: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "grokdeployment", name, "-n", namespace, "-o", "json").stdout
    status: dict[str, Any] = json.loads(out).get("status") or {}
    return status


#: Kinds of the examples that need Kueue (examples/grok-1-int8-2x8-kueue.yaml); cluster-scoped ones
#: are deleted after the test.
KUEUE_KINDS = {"ResourceFlavor", "ClusterQueue", "LocalQueue", "WorkloadPriorityClass"}
KUEUE_CLUSTER_KINDS = {"ResourceFlavor", "ClusterQueue", "WorkloadPriorityClass"}


def needs_kueue(docs: list[dict[str, Any]], cluster: Any, namespace: str, request: Any) -> list[str]:
    """Start Kueue (the session's `kueue` fixture) and let it manage `namespace` when the example
    has Kueue objects; return `kubectl delete` arguments for its cluster-scoped ones."""
    if not any(d["kind"] in KUEUE_KINDS for d in docs):
        return []
    from grok_devcluster.kueue import label_namespace_managed

    request.getfixturevalue("kueue")
    label_namespace_managed(cluster, namespace)
    return [f"{d['kind'].lower()}/{d['metadata']['name']}" for d in docs if d["kind"] in KUEUE_CLUSTER_KINDS]


@pytest.mark.parametrize(
    "example",
    ["tiny-cpu.yaml", "grok-1-int8-1x8.yaml", "grok-1-int8-2x8.yaml", "grok-1-int8-2x8-kueue.yaml"],
)
def test_example_is_accepted_and_reaches_the_state_its_comment_claims(
    cluster: Any, operator_namespace: str, example: str, request: pytest.FixtureRequest
) -> None:
    path = EXAMPLES / example
    docs = documents(path)
    cluster_scoped = needs_kueue(docs, cluster, operator_namespace, request)
    volumes = bind_claims(cluster, operator_namespace, docs)
    try:
        deployment = next(d for d in docs if d["kind"] == "GrokDeployment")
        tolerations = deployment["spec"].setdefault("tolerations", [])
        if KWOK_TOLERATION not in tolerations:  # the fake nodes' taint, not part of a real cluster
            tolerations.append(KWOK_TOLERATION)
        manifest = "\n---\n".join(json.dumps(d) for d in docs)
        cluster.kubectl("apply", "-n", operator_namespace, "-f", "-", input=manifest)
        name = deployment["metadata"]["name"]
        phase = expected_phase(path)

        last: dict[str, Any] = {}

        def reached() -> bool:
            last.update(status_of(cluster, operator_namespace, name))
            return last.get("phase") == phase

        try:
            wait_for(f"{example} to reach phase {phase}", reached, 180)
        except AssertionError as error:
            raise AssertionError(f"{error}; last status: {last}") from None
        status = status_of(cluster, operator_namespace, name)
        if phase == "Ready":
            assert status["readyReplicas"] == deployment["spec"]["replicas"]
            hosts = deployment["spec"]["topology"]["hostsPerReplica"]
            pods = json.loads(cluster.kubectl("get", "pods", "-n", operator_namespace, "-o", "json").stdout)[
                "items"
            ]
            assert len(pods) == hosts * deployment["spec"]["replicas"]
            if hosts > 1:  # the anti-affinity in the example: one host per node
                assert len({p["spec"]["nodeName"] for p in pods}) == hosts
    finally:
        for volume in volumes:
            cluster.kubectl("delete", "pv", volume, "--wait=false", check=False)
        if cluster_scoped:
            cluster.kubectl("delete", *cluster_scoped, "--wait=false", check=False)


def test_grok_1_int8_does_not_fit_one_8x40gb_host_as_the_two_host_example_says(
    cluster: Any, operator_namespace: str
) -> None:
    deployment = copy.deepcopy(
        next(d for d in documents(EXAMPLES / "grok-1-int8-2x8.yaml") if d["kind"] == "GrokDeployment")
    )
    deployment["metadata"]["name"] = "grok-1-one-host"
    deployment["spec"]["topology"]["hostsPerReplica"] = 1
    deployment["spec"]["topology"]["mesh"] = {"data": 1, "expert": 1, "model": 8}
    cluster.kubectl("apply", "-n", operator_namespace, "-f", "-", input=json.dumps(deployment))
    wait_for(
        "the one-host variant to be refused",
        lambda: status_of(cluster, operator_namespace, "grok-1-one-host").get("phase") == "Infeasible",
        60,
    )
    conditions = {
        c["type"]: c for c in status_of(cluster, operator_namespace, "grok-1-one-host")["conditions"]
    }
    assert conditions["Ready"]["reason"] == "InsufficientDeviceMemory"
    assert "GiB" in conditions["Ready"]["message"] or "GB" in conditions["Ready"]["message"]
    pods = json.loads(cluster.kubectl("get", "pods", "-n", operator_namespace, "-o", "json").stdout)["items"]
    assert pods == []
