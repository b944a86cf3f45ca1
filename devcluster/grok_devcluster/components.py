"""Command lines of the control-plane processes, built as pure functions of the run's files.

Data flow: binaries (binaries.py) + `RunLayout` and `Ports` (layout.py) -> `component_specs()` ->
one `ComponentSpec` per process in start order: etcd, kube-apiserver, then kube-controller-manager,
kube-scheduler and kwok (which only need the API server). cluster.py starts them and probes each
`health_url`. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .layout import Ports, RunLayout

#: A /16 (65,534 ClusterIPs), as a real cluster has: 1,000 GrokDeployments take a client Service each.
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/16"
POD_CIDR = "10.244.0.1/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_NODE_ANNOTATION_VALUE = "fake"


@dataclass(frozen=True)
class ComponentSpec:
    """One process to start: its name, full argv and the URL that answers once it is healthy."""

    name: str
    argv: tuple[str, ...]
    health_url: str | None
    # The API server must answer before this process starts.
    needs_apiserver: bool


def etcd_argv(binary: Path, layout: RunLayout, ports: Ports) -> list[str]:
    client = f"http://127.0.0.1:{ports.etcd_client}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    return [
        str(binary),
        "--name=devcluster",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=devcluster={peer}",
        # Test data is thrown away with the run: skipping fsync makes writes ~10x faster.
        "--unsafe-no-fsync=true",
        "--log-level=warn",
    ]


def apiserver_argv(
    binary: Path,
    layout: RunLayout,
    ports: Ports,
    address: str = "127.0.0.1",
    service_range: str = SERVICE_CLUSTER_IP_RANGE,
) -> list[str]:
    """The API server on loopback; with a real node, on the bridge address (`address`) instead, so
    that pods reach it through the `kubernetes` Service and it reaches the kubelet."""
    pki = layout.pki
    real_node = address != "127.0.0.1"
    return [
        str(binary),
        f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
        f"--bind-address={address}",
        f"--advertise-address={address}",
        f"--secure-port={ports.apiserver}",
        f"--cert-dir={layout.cert_dir('kube-apiserver')}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--authorization-mode=RBAC",
        f"--service-cluster-ip-range={service_range}",
        "--allow-privileged=true",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        *(_real_node_flags(pki) if real_node else _loopback_only_flags()),
        "--profiling=false",
    ]


def _loopback_only_flags() -> list[str]:
    # Nothing can reach 127.0.0.1 from inside a pod, and Endpoints reject loopback addresses:
    # leave the `kubernetes` Service without endpoints instead of logging errors forever.
    return ["--endpoint-reconciler-type=none"]


def _real_node_flags(pki: Path) -> list[str]:
    # Logs, exec and port-forward go through the kubelet, which accepts the admin certificate.
    return [
        "--endpoint-reconciler-type=lease",
        f"--kubelet-client-certificate={pki / 'admin.crt'}",
        f"--kubelet-client-key={pki / 'admin.key'}",
        "--kubelet-preferred-address-types=InternalIP",
    ]


def _client_flags(layout: RunLayout) -> list[str]:
    kubeconfig = layout.kubeconfig
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
    ]


def controller_manager_argv(
    binary: Path, layout: RunLayout, ports: Ports, service_range: str = SERVICE_CLUSTER_IP_RANGE
) -> list[str]:
    pki = layout.pki
    return [
        str(binary),
        *_client_flags(layout),
        f"--secure-port={ports.controller_manager}",
        f"--cert-dir={layout.cert_dir('kube-controller-manager')}",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        f"--service-cluster-ip-range={service_range}",
        # Controllers act with the admin identity: one client, no per-controller token round trips.
        "--use-service-account-credentials=false",
        # kwok heartbeats from the same two cores as everything else; under a busy test run a late
        # lease renewal must not flip every fake node (and its pods) to NotReady.
        "--node-monitor-grace-period=5m",
        # Client rate limits sized for a fleet (defaults: 20 QPS, 5 StatefulSet workers): 1,000
        # one-pod StatefulSets mean ~3,000 requests from the StatefulSet controller alone.
        "--kube-api-qps=200",
        "--kube-api-burst=400",
        "--concurrent-statefulset-syncs=20",
        "--profiling=false",
    ]


def scheduler_argv(binary: Path, layout: RunLayout, ports: Ports) -> list[str]:
    return [
        str(binary),
        *_client_flags(layout),
        f"--secure-port={ports.scheduler}",
        f"--cert-dir={layout.cert_dir('kube-scheduler')}",
        # Binding 1,000 pods at the default 50 QPS takes 20 s on its own.
        "--kube-api-qps=200",
        "--kube-api-burst=400",
        "--profiling=false",
    ]


def kwok_argv(binary: Path, layout: RunLayout) -> list[str]:
    return [
        str(binary),
        # An explicit (empty) configuration keeps a user's ~/.kwok/kwok.yaml out of the run.
        f"--config={layout.kwok_config}",
        f"--kubeconfig={layout.kubeconfig}",
        "--manage-all-nodes=false",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}={KWOK_NODE_ANNOTATION_VALUE}",
        f"--cidr={POD_CIDR}",
        "--node-ip=127.0.0.1",
        # kwok renews node Leases only when given a lease duration; without them the node-lifecycle
        # controller marks every fake node NotReady about once a minute and its pods lose Ready.
        "--node-lease-duration-seconds=40",
    ]


KWOK_CONFIG = (
    "# Generated by grok_devcluster: no stages listed, so kwok uses its built-in node and pod stages.\n"
    "apiVersion: config.kwok.x-k8s.io/v1alpha1\n"
    "kind: KwokConfiguration\n"
    "options: {}\n"
)


def component_specs(
    binaries: Mapping[str, Path],
    layout: RunLayout,
    ports: Ports,
    api_address: str = "127.0.0.1",
    service_range: str = SERVICE_CLUSTER_IP_RANGE,
) -> list[ComponentSpec]:
    """Every process of the control plane, in start order."""
    return [
        ComponentSpec(
            "etcd",
            tuple(etcd_argv(binaries["etcd"], layout, ports)),
            f"http://127.0.0.1:{ports.etcd_client}/health",
            needs_apiserver=False,
        ),
        ComponentSpec(
            "kube-apiserver",
            tuple(apiserver_argv(binaries["kube-apiserver"], layout, ports, api_address, service_range)),
            f"https://{api_address}:{ports.apiserver}/readyz",
            needs_apiserver=False,
        ),
        ComponentSpec(
            "kube-controller-manager",
            tuple(controller_manager_argv(binaries["kube-controller-manager"], layout, ports, service_range)),
            f"https://127.0.0.1:{ports.controller_manager}/healthz",
            needs_apiserver=True,
        ),
        ComponentSpec(
            "kube-scheduler",
            tuple(scheduler_argv(binaries["kube-scheduler"], layout, ports)),
            f"https://127.0.0.1:{ports.scheduler}/healthz",
            needs_apiserver=True,
        ),
        ComponentSpec("kwok", tuple(kwok_argv(binaries["kwok"], layout)), None, needs_apiserver=True),
    ]
