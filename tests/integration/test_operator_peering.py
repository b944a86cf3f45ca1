"""Two operator processes with the chart's peering arguments (replicaCount: 2): exactly one acts.

The chart is rendered with `helm template` (peering on, two replicas, one watched namespace); its
kopf peering CRD and KopfPeering object are applied, and its Deployment's `grok-operator run`
arguments start two real processes, each named like a pod (POD_ID). Each draws a random priority
(`--priority=random`): the lower one pauses, the higher one acts. Checked: only the active one's
log shows reconcile writes; after `kill -9` of the active one the other resumes within 30 s (the
peer lifetime is 15 s), converges a scale-up, and there are no duplicate children.

Cost: ~60 s on 2 cores (two operator starts, the 15 s peer lifetime).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_operator_support import REPO, Kube, install_crd, small, wait_for

from grok_devcluster.demo import free_port, operator_argv

pytestmark = pytest.mark.cluster

CHART = str(REPO / "charts" / "grok-operator")
PEERING = "grok-operator"
RECONCILED = "reconciled: phase"


class Replica:
    """One operator process, as one pod of the chart's Deployment would run it."""

    def __init__(self, cluster: Any, deployment: dict[str, Any], pod: str, folder: Path) -> None:
        self.pod = pod
        self.log_path = folder / f"{pod}.log"
        argv = operator_argv(deployment, free_port())
        env = {**cluster.env(), "POD_ID": pod, "POD_NAME": pod, "PYTHONUNBUFFERED": "1"}
        # The kubernetes client copies the kubeconfig's key and certificates to temporary files and
        # removes them at exit; `kill -9` skips that, so they go to the test's folder, not /tmp.
        env["TMPDIR"] = str(folder)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def acting(self) -> bool:
        """kopf starts a peered operator paused; it logs each resume and each later pause."""
        log = self.log()
        return log.rfind("Resuming operations") > log.rfind("Pausing operations")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _render_chart(cluster: Any, namespace: str) -> list[dict[str, Any]]:
    out = cluster.helm(
        "template", "peered", CHART, "--namespace", "grok-system",
        "--set", "peering.enabled=true", "--set", "replicaCount=2",
        "--set", f"watch.namespaces={{{namespace}}}",
    ).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _peers(cluster: Any, namespace: str) -> dict[str, dict[str, Any]]:
    out = cluster.kubectl("get", "kopfpeering", PEERING, "-n", namespace, "-o", "json", check=False)
    if out.returncode != 0:
        return {}
    status: dict[str, dict[str, Any]] = json.loads(out.stdout).get("status") or {}
    return status


@pytest.fixture
def replicas(cluster: Any, namespace: str, tmp_path: Path) -> Iterator[tuple[dict[str, Any], list[Replica]]]:
    install_crd(cluster)
    docs = _render_chart(cluster, namespace)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    for crd in (d for d in docs if d["kind"] == "CustomResourceDefinition"):
        cluster.kubectl("apply", "-f", "-", input=json.dumps(crd))
        cluster.wait_crds_established([crd["metadata"]["name"]])
    peering = next(d for d in docs if d["kind"] == "KopfPeering")
    wait_for(
        "the KopfPeering kind to be served",
        lambda: cluster.kubectl("apply", "-f", "-", input=json.dumps(peering), check=False).returncode == 0,
        60,
        1.0,
    )
    running: list[Replica] = []
    try:
        yield deployment, running
    finally:
        # Delete the GrokDeployments while an operator still runs, so kopf's finalizer goes too.
        cluster.kubectl("delete", "grokdeployments", "--all", "-n", namespace, "--timeout=60s", check=False)
        for replica in running:
            replica.stop()


def test_two_replicas_one_acts_and_the_other_takes_over_after_kill_9(
    cluster: Any, namespace: str, tmp_path: Path, replicas: tuple[dict[str, Any], list[Replica]]
) -> None:
    deployment, running = replicas
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--priority=random" in args
    kube = Kube(cluster, namespace)

    # One after the other, so each is known to the peering before the next arrives.
    for pod in ("grok-operator-a", "grok-operator-b"):
        running.append(Replica(cluster, deployment, pod, tmp_path))
        wait_for(f"{pod} in the peering", lambda pod=pod: pod in _peers(cluster, namespace), 60)
    peers = _peers(cluster, namespace)
    priorities = {replica.pod: peers[replica.pod]["priority"] for replica in running}
    assert len(set(priorities.values())) == 2, priorities
    active, standby = sorted(running, key=lambda r: priorities[r.pod], reverse=True)
    wait_for(f"{active.pod} to act", lambda: active.acting(), 30)
    wait_for(f"{standby.pod} to stand by", lambda: not standby.acting(), 30)

    kube.apply(small("ha", namespace, replicas=2))
    kube.wait_ready("ha", 2)
    assert RECONCILED in active.log()
    assert RECONCILED not in standby.log(), standby.log()[-3000:]
    assert not standby.acting()

    active.proc.kill()  # kill -9: no goodbye in the peering object; the standby must notice.
    active.proc.wait()
    cluster.kubectl("scale", "grokdeployment/ha", "-n", namespace, "--replicas=3")
    wait_for(f"{standby.pod} to take over", lambda: standby.acting(), 30)
    kube.wait_ready("ha", 3)
    assert RECONCILED in standby.log()

    def names(kind: str) -> list[str]:
        return sorted(o["metadata"]["name"] for o in kube.items(kind, "serving.grok.dev/deployment=ha"))

    assert names("statefulsets") == ["ha-g0", "ha-g1", "ha-g2"]
    assert names("services") == ["ha", "ha-g0", "ha-g1", "ha-g2"]
    assert names("configmaps") == ["ha-worker-config"]
    assert names("networkpolicies") == ["ha-g0", "ha-g1", "ha-g2"]
    assert names("secrets") == ["ha-g0-step-key", "ha-g1-step-key", "ha-g2-step-key"]
    assert len(names("pods")) == 6
