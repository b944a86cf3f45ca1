"""The real node's configuration and build inputs, as pure functions (no root, no processes).

What is checked is what mattered on this machine kind (../docs/controlplane.md, "A real node"):
containerd never lowers oom_score_adj, the pods' network leads nowhere but the Services, every
listener is on loopback or the bridge, the kubelet leaves the host's cgroups alone, the image
tags follow their inputs, and the Debian packages and CoreDNS are pinned in versions.toml.
"""

from __future__ import annotations

import json
import socket
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from grok_devcluster.components import SERVICE_CLUSTER_IP_RANGE, apiserver_argv
from grok_devcluster.demo import DemoError, choose_mode
from grok_devcluster.demo_pods import chart_values, grokdeployment_manifest, wait_routed
from grok_devcluster.gomod import generated_main_dir, render_main_go, render_tools_go
from grok_devcluster.images import IMAGES, BuiltImage, context_files, image_key
from grok_devcluster.layout import Ports, RunLayout
from grok_devcluster.nodeconfig import (
    NodeLayout,
    NodeNetwork,
    NodePorts,
    cni_conflist,
    containerd_config,
    corefile,
    kube_proxy_config,
    kubelet_config,
)
from grok_devcluster.setup import ANY_VERSION, missing_packages
from grok_devcluster.versions import (
    VersionsError,
    load_base_image,
    load_debian_packages,
    load_groups,
    parse_groups,
)

REPO = Path(__file__).resolve().parents[2]
NETWORK = NodeNetwork()
PORTS = NodePorts(10250, 10248, 10256, 10249, 8080, 8181)


@pytest.fixture
def layout(tmp_path: Path) -> NodeLayout:
    return NodeLayout(tmp_path / "node", tmp_path / "containerd")


def test_the_bridge_network_is_a_private_slash_24_and_its_first_address_is_the_node() -> None:
    assert NETWORK.gateway == "10.88.0.1"
    with pytest.raises(ValueError, match="private /24"):
        NodeNetwork(subnet="8.8.8.0/24")
    with pytest.raises(ValueError, match="private /24"):
        NodeNetwork(subnet="10.88.0.0/16")
    with pytest.raises(ValueError, match="1 to 15 characters"):
        NodeNetwork(bridge="a-very-long-bridge-name")


def test_containerd_never_lowers_oom_score_adj_and_keeps_its_state_in_the_run_folder(
    layout: NodeLayout,
) -> None:
    config = tomllib.loads(containerd_config(layout, "/usr/lib/cni"))
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cri["sandbox_image"].startswith("registry.local/pause:")
    assert cri["cni"]["conf_dir"] == str(layout.cni_conf_dir)
    assert config["root"] == str(layout.containerd_root)  # images survive the run
    assert config["state"].startswith(str(layout.root))
    assert config["grpc"]["address"] == str(layout.containerd_socket)


def test_pods_get_no_masquerade_and_no_default_route_only_the_services(layout: NodeLayout) -> None:
    conflist = json.loads(cni_conflist(NETWORK, layout))
    bridge = conflist["plugins"][0]
    assert bridge["bridge"] == NETWORK.bridge
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["routes"] == [{"dst": SERVICE_CLUSTER_IP_RANGE}]
    assert bridge["ipam"]["dataDir"].startswith(str(layout.root))
    (rng,) = bridge["ipam"]["ranges"][0]
    assert rng["gateway"] == NETWORK.gateway
    assert rng["subnet"] == NETWORK.subnet


def test_the_kubelet_listens_on_the_bridge_and_loopback_and_adds_no_cgroup_hierarchy(
    layout: NodeLayout,
) -> None:
    config: dict[str, Any] = yaml.safe_load(kubelet_config(NETWORK, layout, PORTS, Path("/ca.crt")))
    assert config["address"] == NETWORK.gateway
    assert config["healthzBindAddress"] == "127.0.0.1"
    assert config["readOnlyPort"] == 0
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["cgroupsPerQOS"] is False
    assert config["clusterDNS"] == [NETWORK.gateway]
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["authorization"]["mode"] == "Webhook"
    assert config["imageGCHighThresholdPercent"] == 100  # local images cannot be pulled again


def test_kube_proxy_changes_no_conntrack_sysctl_and_serves_node_ports_only_on_the_bridge() -> None:
    config: dict[str, Any] = yaml.safe_load(kube_proxy_config(NETWORK, PORTS, Path("/k"), "n"))
    assert config["mode"] == "iptables"
    assert config["nodePortAddresses"] == ["10.88.0.1/32"]
    assert config["iptables"]["localhostNodePorts"] is False
    assert config["conntrack"]["maxPerCore"] == 0
    assert config["conntrack"]["min"] == 0
    assert config["healthzBindAddress"].startswith("127.0.0.1:")


def test_coredns_binds_the_bridge_and_forwards_nothing_off_the_machine() -> None:
    text = corefile(NETWORK, PORTS, Path("/k"))
    assert f"bind {NETWORK.gateway}" in text
    assert "kubernetes cluster.local" in text
    assert "forward" not in text


def test_with_a_real_node_the_api_server_moves_to_the_bridge_and_reaches_kubelets(tmp_path: Path) -> None:
    layout, ports = RunLayout(tmp_path), Ports(1, 2, 3, 4, 5)
    loopback = apiserver_argv(Path("kube-apiserver"), layout, ports)
    assert "--bind-address=127.0.0.1" in loopback
    assert "--endpoint-reconciler-type=none" in loopback
    bridged = apiserver_argv(Path("kube-apiserver"), layout, ports, NETWORK.gateway)
    assert f"--bind-address={NETWORK.gateway}" in bridged
    assert "--endpoint-reconciler-type=lease" in bridged
    assert any(arg.startswith("--kubelet-client-certificate=") for arg in bridged)


def test_coredns_is_assembled_from_a_generated_main_with_only_the_plugins_pinned() -> None:
    group = load_groups()["coredns"]
    assert generated_main_dir(group) == "cmd/coredns"
    main = render_main_go(group)
    assert "package main" in main
    assert "coremain.Run()" in main
    assert '_ "github.com/coredns/coredns/plugin/kubernetes"' in main
    assert "plugin/forward" not in main
    assert "import" not in render_tools_go(group)  # a main package cannot be imported


def test_a_generated_main_must_name_a_function() -> None:
    table = {"module": "m", "version": "v1.0.0", "binaries": {"x": "grokdevcluster/g/cmd/x"}}
    with pytest.raises(VersionsError, match=r"\[g.main\] run"):
        parse_groups({"g": {**table, "main": {"run": "example.com/pkg", "imports": []}}})


def test_the_debian_packages_and_base_image_are_pinned_in_versions_toml() -> None:
    packages = load_debian_packages()
    for name in (
        "containerd",
        "runc",
        "containernetworking-plugins",
        "iptables",
        "nftables",
        "buildah",
        "umoci",
    ):
        assert packages[name] not in ("", ANY_VERSION), name
    base = load_base_image()
    assert base.suite == "bookworm"
    assert {"python3", "python3-venv"} <= set(base.include)


def test_setup_installs_only_what_is_missing_or_at_another_version(monkeypatch: pytest.MonkeyPatch) -> None:
    installed = {"a": "1.0", "b": "2.0", "c": "9"}
    monkeypatch.setattr("grok_devcluster.setup.installed_version", installed.get)
    wanted = {"a": "1.0", "b": "2.1", "c": ANY_VERSION, "d": ANY_VERSION}
    assert missing_packages(wanted) == {"b": "2.1", "d": ANY_VERSION}


def test_the_image_tag_follows_the_build_context_and_ignores_what_dockerignore_drops(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "requirements.lock", "README.md"):
        (tmp_path / name).write_text(name)
    (tmp_path / ".dockerignore").write_text((REPO / ".dockerignore").read_text())
    source = tmp_path / "worker" / "grok_worker" / "x.py"
    source.parent.mkdir(parents=True)
    source.write_text("a = 1\n")
    files = {p.relative_to(tmp_path).as_posix() for p in context_files(tmp_path)}
    assert files == {"pyproject.toml", "requirements.lock", "README.md", "worker/grok_worker/x.py"}
    spec = IMAGES["grok-worker"]
    first = image_key(spec, "base", tmp_path)
    (tmp_path / "worker" / "grok_worker" / "__pycache__").mkdir()
    (tmp_path / "worker" / "grok_worker" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (tmp_path / "notes.txt").write_text("not in the context")
    assert image_key(spec, "base", tmp_path) == first
    source.write_text("a = 2\n")
    assert image_key(spec, "base", tmp_path) != first
    assert image_key(spec, "other base", tmp_path) != image_key(spec, "base", tmp_path)


def built(name: str, tag: str) -> BuiltImage:
    return BuiltImage(name, f"registry.local/{name}:{tag}", tag, Path("/x.tar"), 0.0, cached=True)


def test_the_demo_runs_the_charts_operator_on_the_local_image_at_one_replica() -> None:
    values = chart_values(built("grok-operator", "abc123"))
    pairs = dict(v.split("=", 1) for v in values[1::2])
    assert pairs == {
        "image.repository": "registry.local/grok-operator",
        "image.tag": "abc123",
        "image.pullPolicy": "Never",
        "replicaCount": "1",
    }


def test_the_demo_grokdeployment_uses_the_local_worker_image_and_the_checkpoint_folder(
    tmp_path: Path,
) -> None:
    manifest = grokdeployment_manifest(
        REPO / "examples" / "tiny-cpu.yaml", built("grok-worker", "t1"), tmp_path
    )
    assert manifest["spec"]["image"] == "registry.local/grok-worker:t1"
    assert manifest["spec"]["imagePullPolicy"] == "Never"
    assert manifest["spec"]["model"]["checkpoint"] == {"hostPath": {"path": str(tmp_path)}}


def test_the_demo_falls_back_to_processes_and_says_why_when_no_real_node_can_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("grok_devcluster.realnode.check_real_node", lambda: "a real node needs root")
    assert choose_mode("auto", None) == "host"
    assert "a real node needs root" in capsys.readouterr().out
    with pytest.raises(DemoError, match="needs root"):
        choose_mode("pods", None)
    assert choose_mode("auto", "/some/kubeconfig") == "host"
    assert choose_mode("host", None) == "host"


def test_a_service_address_counts_as_routed_only_once_it_accepts_a_connection() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        open_target = f"127.0.0.1:{listener.getsockname()[1]}"
        wait_routed(open_target, timeout_s=1)
    # The port is closed now, as a ClusterIP without a ready endpoint answers: refused.
    with pytest.raises(TimeoutError, match=r"accepted no connection .* kube-proxy's log"):
        wait_routed(open_target, timeout_s=0.5)
