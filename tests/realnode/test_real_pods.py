"""End-to-end on real pods: the worker image in containers on a real kubelet node (see conftest).

- a 2-host replica group: two worker pods, one JAX CPU device each, join over the headless
  Service's DNS name (host 0's coordinator) and serve `grok generate` through the client Service;
- deleting one of its pods makes the operator recreate the whole group, which serves again;
- a new image tag rolls group by group: the second group's pod is replaced only once the first
  group serves on the new image;
- a renewed TLS Secret reaches the running worker through kubelet and is served without a restart
  (the container's seccomp profile, read-only root and non-root user included); the Secret has a
  ca.crt, as cert-manager's CA issuers write it, and `clientCertificates: None` serves it to
  clients without certificates;
- a client CA Secret of its own (clientCASecretName): the pod requires a certificate from that CA,
  and refuses a client without one or with one from the server's CA;
- `helm test` runs the chart's test pod against the operator pod.

Cost on 2 cores: 4 to 5 minutes with the images cached (each worker start imports JAX,
loads the checkpoint and compiles; the group restart and the roll start four more).
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from grok_devcluster.pki import new_ca
from grok_worker.contract import Env
from tests.pki import client_pair, digest, pem, served, server_pair

from .conftest import (
    OPERATOR_NAMESPACE,
    RELEASE,
    RealCluster,
    apply,
    generate,
    get_json,
    grokdeployment,
    pods,
    service_target,
    wait_ready,
)

pytestmark = [pytest.mark.realnode, pytest.mark.slow]


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"]}


def test_a_two_host_group_joins_over_the_headless_service_serves_and_is_recreated_whole(
    real_cluster: RealCluster, namespace: str
) -> None:
    apply(real_cluster, namespace, grokdeployment(real_cluster, "pair", hosts=2))
    wait_ready(real_cluster, namespace, "pair")
    first = pods(real_cluster, namespace, "pair")
    assert [p["metadata"]["name"] for p in first] == ["pair-g0-0", "pair-g0-1"]
    for pod in first:
        assert pod["spec"]["nodeName"] == real_cluster.node
        assert pod["status"]["phase"] == "Running"
        assert pod["status"]["podIP"].startswith("10.88.0.")
        env = env_of(pod)
        assert env[Env.COORDINATOR_ADDRESS] == f"pair-g0-0.pair-g0.{namespace}.svc:8476"
    assert "[length, 6 tokens]" in generate(service_target(real_cluster, namespace, "pair"))
    follower_log = real_cluster.handle.kubectl("logs", "-n", namespace, "pair-g0-1").stdout
    assert follower_log.strip(), "the follower pod wrote no log"

    real_cluster.handle.kubectl("delete", "pod", "-n", namespace, "pair-g0-1", "--wait=false")
    old = {p["metadata"]["uid"] for p in first}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        now = pods(real_cluster, namespace, "pair")
        if len(now) == 2 and not old & {p["metadata"]["uid"] for p in now}:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"the operator did not recreate both pods of the group: {[p['metadata'] for p in now]}")
    wait_ready(real_cluster, namespace, "pair")
    assert "[length, 6 tokens]" in generate(service_target(real_cluster, namespace, "pair"))


def test_a_new_image_tag_rolls_one_group_at_a_time(real_cluster: RealCluster, namespace: str) -> None:
    worker = real_cluster.images["grok-worker"]
    next_ref = f"{worker.ref}-next"
    ctr = ["ctr", f"--address={real_cluster.containerd_socket}", "--namespace=k8s.io"]
    subprocess.run([*ctr, "images", "tag", "--force", worker.ref, next_ref], check=True, capture_output=True)
    apply(real_cluster, namespace, grokdeployment(real_cluster, "roll", replicas=2))
    wait_ready(real_cluster, namespace, "roll")
    apply(real_cluster, namespace, grokdeployment(real_cluster, "roll", replicas=2, image=next_ref))
    # Per group: when its old pod vanished, and when a pod on the new image was first Ready.
    gone: dict[str, float] = {}
    ready_new: dict[str, float] = {}
    old = {
        p["metadata"]["uid"]: p["metadata"]["labels"]["serving.grok.dev/group"]
        for p in pods(real_cluster, namespace, "roll")
    }
    deadline = time.monotonic() + 420
    while len(ready_new) < 2 and time.monotonic() < deadline:
        now = pods(real_cluster, namespace, "roll")
        uids = {p["metadata"]["uid"] for p in now}
        for uid, group in old.items():
            if uid not in uids:
                gone.setdefault(group, time.monotonic())
        for pod in now:
            group = pod["metadata"]["labels"]["serving.grok.dev/group"]
            ready = any(
                c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])
            )
            if ready and pod["spec"]["containers"][0]["image"] == next_ref:
                ready_new.setdefault(group, time.monotonic())
        time.sleep(0.5)
    assert sorted(ready_new) == ["roll-g0", "roll-g1"], f"not every group rolled: {ready_new}"
    first, second = sorted(ready_new, key=ready_new.__getitem__)
    assert gone[second] > ready_new[first], (
        f"{second}'s old pod went at {gone[second]:.1f} before {first} served the new image at {ready_new[first]:.1f}"
    )
    found = wait_ready(real_cluster, namespace, "roll")
    assert found["status"]["readyReplicas"] == 2
    assert "[length, 6 tokens]" in generate(service_target(real_cluster, namespace, "roll"))


def tls_secret(name: str, pair: tuple[str, str], ca_pem: str) -> dict[str, Any]:
    data = {"tls.crt": pair[0], "tls.key": pair[1], "ca.crt": ca_pem}  # as cert-manager's CA issuer writes it
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/tls",
        "stringData": data,
    }


def health_over_tls(target: str, ca_pem: str, client: tuple[str, str] | None = None) -> str:
    """grpc.health.v1 Check over TLS verified against `ca_pem` (the certificate names localhost),
    presenting the `client` certificate and key when given."""
    cert, key = (client[0].encode(), client[1].encode()) if client else (None, None)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca_pem.encode(), private_key=key, certificate_chain=cert
    )
    options = [("grpc.ssl_target_name_override", "localhost")]
    with grpc.secure_channel(target, credentials, options=options) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def test_a_renewed_tls_secret_is_served_by_the_running_pod(real_cluster: RealCluster, namespace: str) -> None:
    ca = new_ca("real-node test CA")
    ca_pem, first = pem(ca)[0], server_pair(ca)
    apply(real_cluster, namespace, tls_secret("tlsd-tls", first, ca_pem))
    manifest = grokdeployment(real_cluster, "tlsd")
    # None: server-only TLS although the Secret has ca.crt; the health checks below bring no certificate.
    manifest["spec"]["serving"]["tls"] = {"secretName": "tlsd-tls", "clientCertificates": "None"}
    apply(real_cluster, namespace, manifest)
    wait_ready(real_cluster, namespace, "tlsd")
    (pod,) = pods(real_cluster, namespace, "tlsd")
    target = service_target(real_cluster, namespace, "tlsd")
    host, port = target.rsplit(":", 1)
    assert served(host, int(port)) == digest(first[0])
    assert health_over_tls(target, ca_pem) == "SERVING"

    renewed = server_pair(ca)  # what cert-manager does before the old one expires
    apply(real_cluster, namespace, tls_secret("tlsd-tls", renewed, ca_pem))
    deadline = time.monotonic() + 120  # kubelet's sync (10 s here) plus the worker's check (5 s)
    while served(host, int(port)) != digest(renewed[0]):
        assert time.monotonic() < deadline, "the pod still serves the old certificate after 120 s"
        time.sleep(1)
    assert health_over_tls(target, ca_pem) == "SERVING"
    (now,) = pods(real_cluster, namespace, "tlsd")
    assert now["metadata"]["uid"] == pod["metadata"]["uid"]
    assert now["status"]["containerStatuses"][0]["restartCount"] == 0
    log = real_cluster.handle.kubectl("logs", "-n", namespace, pod["metadata"]["name"]).stdout
    assert "serving the renewed TLS certificate" in log


def test_a_client_ca_secret_of_its_own_makes_the_pod_require_its_client_certificates(
    real_cluster: RealCluster, namespace: str
) -> None:
    server_ca, clients_ca = new_ca("real-node server CA"), new_ca("real-node clients CA")
    server_ca_pem = pem(server_ca)[0]
    apply(real_cluster, namespace, tls_secret("mtls-tls", server_pair(server_ca), server_ca_pem))
    # The clients CA's own Secret as cert-manager keeps a self-signed CA, private key included:
    # only its ca.crt is mounted.
    apply(real_cluster, namespace, tls_secret("mtls-clients-ca", pem(clients_ca), pem(clients_ca)[0]))
    manifest = grokdeployment(real_cluster, "mtls")
    manifest["spec"]["serving"]["tls"] = {"secretName": "mtls-tls", "clientCASecretName": "mtls-clients-ca"}
    apply(real_cluster, namespace, manifest)
    wait_ready(real_cluster, namespace, "mtls")
    target = service_target(real_cluster, namespace, "mtls")
    assert health_over_tls(target, server_ca_pem, client_pair(clients_ca)) == "SERVING"
    for client in (None, client_pair(server_ca)):  # no certificate; one from the server's CA
        with pytest.raises(grpc.RpcError) as refused:
            health_over_tls(target, server_ca_pem, client)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_helm_test_runs_its_pod_against_the_operator_pod(real_cluster: RealCluster) -> None:
    operator = get_json(
        real_cluster, "pods", "-n", OPERATOR_NAMESPACE, "-l", f"app.kubernetes.io/instance={RELEASE}"
    )
    running = [p for p in operator["items"] if p["status"]["phase"] == "Running"]
    assert len(running) == 1
    assert running[0]["spec"]["serviceAccountName"] == RELEASE
    # The hook pod is deleted once it succeeds (hook-delete-policy), so its phase is the evidence.
    result = real_cluster.handle.helm("test", RELEASE, "-n", OPERATOR_NAMESPACE, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"TEST SUITE:     {RELEASE}-test-up" in result.stdout
    assert "Phase:          Succeeded" in result.stdout
