"""Command lines, certificates, kubeconfig, node manifests, state records and process control of
the local control plane, checked without starting it.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from grok_devcluster.cluster import ClusterOptions
from grok_devcluster.components import SERVICE_CLUSTER_IP_RANGE, component_specs
from grok_devcluster.kubeconfig import render_kubeconfig, write_kubeconfig
from grok_devcluster.layout import Ports, RunLayout
from grok_devcluster.nodes import GpuNodeSpec, render_gpu_node
from grok_devcluster.pki import generate_pki
from grok_devcluster.process import (
    ProcessRecord,
    is_running,
    process_cpu_seconds,
    process_start_time,
    spawn,
    stop,
)
from grok_devcluster.state import RunState

PORTS = Ports(etcd_client=20001, etcd_peer=20002, apiserver=20003, controller_manager=20004, scheduler=20005)
BINARIES = {
    name: Path(f"/bin/{name}")
    for name in (
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubectl",
        "kwok",
        "helm",
    )
}


def _flags(argv: tuple[str, ...]) -> dict[str, str]:
    return dict(arg.removeprefix("--").split("=", 1) for arg in argv[1:])


@pytest.fixture
def specs(tmp_path: Path) -> dict[str, tuple[str, ...]]:
    return {spec.name: spec.argv for spec in component_specs(BINARIES, RunLayout(tmp_path), PORTS)}


def test_processes_start_in_dependency_order(tmp_path: Path) -> None:
    specs = component_specs(BINARIES, RunLayout(tmp_path), PORTS)
    assert [s.name for s in specs] == [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    ]
    assert [s.needs_apiserver for s in specs] == [False, False, True, True, True]
    assert specs[0].health_url == "http://127.0.0.1:20001/health"
    assert specs[1].health_url == "https://127.0.0.1:20003/readyz"


def test_everything_listens_on_loopback_only(specs: dict[str, tuple[str, ...]]) -> None:
    for name, argv in specs.items():
        for flag, value in _flags(argv).items():
            assert not value.removeprefix("http://").startswith("0.0.0.0"), f"{name} --{flag}={value}"
            if flag.startswith(("listen-", "advertise-", "bind-")):
                assert "127.0.0.1" in value, f"{name} --{flag}={value}"


def test_etcd_skips_fsync_and_uses_the_run_ports(specs: dict[str, tuple[str, ...]], tmp_path: Path) -> None:
    flags = _flags(specs["etcd"])
    assert flags["unsafe-no-fsync"] == "true"
    assert flags["listen-client-urls"] == "http://127.0.0.1:20001"
    assert flags["listen-peer-urls"] == "http://127.0.0.1:20002"
    assert flags["data-dir"] == str(tmp_path / "etcd-data")


def test_apiserver_uses_rbac_client_certificates_and_service_account_keys(
    specs: dict[str, tuple[str, ...]], tmp_path: Path
) -> None:
    flags = _flags(specs["kube-apiserver"])
    assert flags["etcd-servers"] == "http://127.0.0.1:20001"
    assert flags["secure-port"] == "20003"
    assert flags["authorization-mode"] == "RBAC"
    assert flags["client-ca-file"] == str(tmp_path / "pki" / "ca.crt")
    assert flags["service-account-key-file"] == str(tmp_path / "pki" / "sa.pub")
    assert flags["service-account-signing-key-file"] == str(tmp_path / "pki" / "sa.key")
    assert flags["service-account-issuer"].startswith("https://")


def test_controller_manager_can_sign_tokens_and_runs_without_leader_election(
    specs: dict[str, tuple[str, ...]], tmp_path: Path
) -> None:
    flags = _flags(specs["kube-controller-manager"])
    assert flags["leader-elect"] == "false"
    assert flags["service-account-private-key-file"] == str(tmp_path / "pki" / "sa.key")
    assert flags["root-ca-file"] == str(tmp_path / "pki" / "ca.crt")
    assert flags["kubeconfig"] == str(tmp_path / "admin.kubeconfig")
    assert flags["secure-port"] == "20004"
    assert _flags(specs["kube-scheduler"])["secure-port"] == "20005"
    assert _flags(specs["kube-scheduler"])["leader-elect"] == "false"


def test_kwok_manages_only_annotated_nodes(specs: dict[str, tuple[str, ...]], tmp_path: Path) -> None:
    flags = _flags(specs["kwok"])
    assert flags["manage-all-nodes"] == "false"
    assert flags["manage-nodes-with-annotation-selector"] == "kwok.x-k8s.io/node=fake"
    assert flags["config"] == str(tmp_path / "kwok.yaml")


def test_allocated_ports_are_distinct_and_bindable() -> None:
    ports = Ports.allocate()
    numbers = [ports.etcd_client, ports.etcd_peer, ports.apiserver, ports.controller_manager, ports.scheduler]
    assert len(set(numbers)) == 5
    assert all(1024 < n < 65536 for n in numbers)


def test_gpu_node_carries_kwok_annotation_taint_labels_and_gpu_capacity() -> None:
    node = render_gpu_node("gpu-node-3", GpuNodeSpec(gpus=4))
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    assert node["spec"]["taints"] == [{"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}]
    labels = node["metadata"]["labels"]
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert labels["nvidia.com/gpu.memory"] == "81559"
    assert labels["kubernetes.io/hostname"] == "gpu-node-3"
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "4"
    assert node["status"]["allocatable"] == node["status"]["capacity"]


def test_a_negative_gpu_count_is_rejected_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"GpuNodeSpec\.gpus must be >= 0"):
        GpuNodeSpec(gpus=-1)


def test_both_controllers_get_the_service_range_a_cluster_is_given(tmp_path: Path) -> None:
    specs = {
        s.name: s.argv
        for s in component_specs(BINARIES, RunLayout(tmp_path), PORTS, service_range="10.0.0.0/28")
    }
    for name in ("kube-apiserver", "kube-controller-manager"):
        assert _flags(specs[name])["service-cluster-ip-range"] == "10.0.0.0/28"
    default = {s.name: s.argv for s in component_specs(BINARIES, RunLayout(tmp_path), PORTS)}
    assert _flags(default["kube-apiserver"])["service-cluster-ip-range"] == SERVICE_CLUSTER_IP_RANGE


@pytest.mark.parametrize(
    ("service_range", "says"),
    [
        ("10.0.1.0/28", "must start at 10.0.0.0"),
        ("10.0.0.0/30", "a /28 or larger"),
        ("10.1.0.0/16", "subnet of 10.0.0.0/16"),
        ("fd00::/112", "subnet of 10.0.0.0/16"),
        ("ten", "does not appear to be"),
    ],
)
def test_a_service_range_the_kubernetes_service_cannot_keep_is_refused(service_range: str, says: str) -> None:
    with pytest.raises(ValueError, match=f"service_range {service_range!r}.*{says}"):
        ClusterOptions(service_range=service_range)


def test_pki_signs_a_loopback_serving_cert_and_a_system_masters_admin(tmp_path: Path) -> None:
    files = generate_pki(tmp_path)
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    admin = x509.load_pem_x509_certificate(files.admin_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    admin.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)
    assert "kubernetes.default.svc" in san.get_values_for_type(x509.DNSName)
    assert (
        ExtendedKeyUsageOID.SERVER_AUTH
        in server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    assert (
        ExtendedKeyUsageOID.CLIENT_AUTH
        in admin.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )
    for key in (files.ca_key, files.server_key, files.admin_key, files.service_account_key):
        assert key.stat().st_mode & 0o077 == 0, f"{key.name} is readable by others"


def test_kubeconfig_embeds_the_run_credentials(tmp_path: Path) -> None:
    files = generate_pki(tmp_path)
    text = render_kubeconfig(
        "https://127.0.0.1:6443", files.ca_cert, files.admin_cert, files.admin_key, "dev"
    )
    path = tmp_path / "kubeconfig"
    write_kubeconfig(path, text)
    assert path.stat().st_mode & 0o777 == 0o600
    config = yaml.safe_load(path.read_text())
    assert config["current-context"] == "dev"
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == files.ca_cert.read_bytes()
    user = config["users"][0]["user"]
    assert base64.b64decode(user["client-key-data"]) == files.admin_key.read_bytes()


def test_run_state_round_trips_through_json() -> None:
    state = RunState(
        name="x",
        root="/tmp/r",
        server="https://127.0.0.1:1",
        kubeconfig="/tmp/r/k",
        kubectl="/k",
        helm="/h",
        ports=PORTS,
        processes=[ProcessRecord("etcd", 42, 1234, "/tmp/r/logs/etcd.log")],
        startup_s=4.5,
    )
    assert RunState.from_json(state.to_json()) == state


def test_stop_ends_a_spawned_process_and_is_idempotent(tmp_path: Path) -> None:
    popen, record = spawn("sleeper", ["sleep", "60"], tmp_path / "sleep.log")
    assert is_running(record)
    assert record.start_time == process_start_time(record.pid)
    stop(record, popen, grace_s=5)
    assert popen.returncode is not None
    assert not is_running(record)
    stop(record, popen)


def test_cpu_seconds_grow_with_work_and_are_none_once_the_process_is_gone(tmp_path: Path) -> None:
    busy = (
        "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\ntime.sleep(60)"
    )
    popen, record = spawn("busy", [sys.executable, "-c", busy], tmp_path / "busy.log")
    deadline = time.monotonic() + 30
    while (process_cpu_seconds(record.pid) or 0.0) < 0.3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (process_cpu_seconds(record.pid) or 0.0) >= 0.3
    stop(record, popen, grace_s=5)
    assert process_cpu_seconds(record.pid) is None


def test_stop_by_pid_alone_works_from_another_process(tmp_path: Path) -> None:
    # What `grok-devcluster down` does: no Popen, only the recorded pid and start time.
    popen, record = spawn("sleeper", ["sleep", "60"], tmp_path / "sleep.log")
    try:
        stop(record, None, grace_s=5)
        popen.wait(timeout=5)
        assert not is_running(record)
    finally:
        popen.kill()
        popen.wait()


def test_a_reused_pid_is_not_mistaken_for_ours(tmp_path: Path) -> None:
    popen, record = spawn("sleeper", ["sleep", "60"], tmp_path / "sleep.log")
    try:
        assert record.start_time is not None
        impostor = ProcessRecord(record.name, record.pid, record.start_time + 1, record.log)
        assert not is_running(impostor)
        stop(impostor, None)  # must not signal the unrelated process
        assert popen.poll() is None
    finally:
        popen.kill()
        popen.wait()


def test_spawned_process_output_goes_to_its_log(tmp_path: Path) -> None:
    log = tmp_path / "echo.log"
    popen, _ = spawn("echo", ["sh", "-c", "echo hello; echo oops >&2"], log)
    assert popen.wait(timeout=5) == 0
    assert log.read_text().split() == ["hello", "oops"]


#: A parent that starts `sleep` with die_with_parent, with a Python fork handler that leaves a file
#: behind if Python code ever runs in the child, then prints the child's pid.
_PARENT = """
import os, sys, time
from pathlib import Path
from grok_devcluster.process import spawn
os.register_at_fork(after_in_child=lambda: Path(sys.argv[2]).write_text("python ran in the child"))
popen, record = spawn("sleeper", ["sleep", "60"], Path(sys.argv[1]), die_with_parent=True)
print(record.pid, record.start_time, flush=True)
time.sleep(60)
"""


def test_a_child_started_with_die_with_parent_runs_no_python_and_dies_with_its_parent(tmp_path: Path) -> None:
    log, marker = tmp_path / "sleep.log", tmp_path / "python-in-child"
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, str(log), str(marker)], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    pid, start_time = parent.stdout.readline().split()
    child = ProcessRecord("sleeper", int(pid), int(start_time), str(log))
    try:
        assert is_running(child)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/comm").read_text().strip() != "sleep" and time.monotonic() < deadline:
            time.sleep(0.02)  # until setpriv has exec'd the program itself
        assert Path(f"/proc/{child.pid}/comm").read_text().strip() == "sleep"
        parent.kill()  # SIGKILL: no cleanup code of the parent runs
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while is_running(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not is_running(child), "the child outlived its parent"
    finally:
        parent.kill()
        parent.wait()
        if is_running(child):
            os.kill(child.pid, signal.SIGKILL)
    assert not marker.exists(), "Python code ran between fork and exec"
