"""A real node in the local cluster: containerd + runc + CNI bridge, the kubelet, kube-proxy, CoreDNS.

Data flow: `check_real_node()` says why a real node cannot run here (not Linux, not root, a Debian
package or binary missing), or None -> `prepare_host()` records the machine's state
(hoststate.py), adds the bridge and the iptables rule that drops pod traffic leaving through any
other interface -> the control plane starts with the API server on the bridge address (cluster.py)
-> `start_node()` writes the node's configuration (nodeconfig.py), starts containerd, imports the
pause image and the images asked for, then starts the kubelet, kube-proxy and CoreDNS and waits
for the node to be Ready -> `stop_node()` stops them, kills every container through containerd,
stops containerd and restores the machine from the recorded state.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from .hoststate import HostSnapshot
from .images import BuiltImage, ensure_pause_image
from .nodeconfig import (
    PAUSE_IMAGE,
    NodeLayout,
    NodeNetwork,
    NodePorts,
    cni_conflist,
    containerd_config,
    corefile,
    kube_proxy_config,
    kubelet_config,
)
from .paths import all_run_state_dirs, cache_root

#: Binaries built from Go modules (versions.toml) that a real node adds to the control plane's.
NODE_BINARIES = ("kubelet", "kube-proxy", "coredns")
#: Commands from the Debian packages `grok-devcluster setup-node` installs.
NODE_COMMANDS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "nft", "ip", "umount")
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
NAMESPACE = "k8s.io"
DROP_COMMENT = "grok-devcluster: pod traffic stays on this machine"


class RealNodeError(RuntimeError):
    """The real node could not be started or stopped; the message says what to do."""


@dataclass
class RealNodeState:
    """What `down` needs to stop the node and restore the machine (part of the cluster's RunState)."""

    node_name: str
    bridge: str
    subnet: str
    root: str
    images: dict[str, str] = field(default_factory=dict)

    @property
    def network(self) -> NodeNetwork:
        return NodeNetwork(self.bridge, self.subnet)

    @property
    def layout(self) -> NodeLayout:
        return NodeLayout(Path(self.root), containerd_root())


def containerd_root() -> Path:
    """containerd's content store and snapshots: in the cache, so imported images survive `down`."""
    return cache_root() / "containerd"


def cni_bin_dir() -> str | None:
    return next((d for d in CNI_BIN_DIRS if Path(d, "bridge").is_file()), None)


def check_real_node() -> str | None:
    """Why a real node cannot run on this machine, or None when it can."""
    if platform.system() != "Linux":
        return f"a real node needs Linux (containers, network namespaces); this is {platform.system()}"
    if os.geteuid() != 0:
        return "a real node needs root (network namespaces, mounts, iptables); run as root"
    missing = [command for command in NODE_COMMANDS if shutil.which(command) is None]
    if cni_bin_dir() is None:
        missing.append("CNI plugins (bridge, host-local, portmap)")
    if missing:
        return f"{', '.join(missing)} not installed; run `grok-devcluster setup-node` (as root) first"
    return None


def running_real_node() -> str | None:
    """The name of another recorded cluster whose real node still runs (only one fits a machine)."""
    from .process import is_running
    from .state import load_state

    for folder in all_run_state_dirs():
        try:
            state = load_state(folder.name)
        except RuntimeError:
            continue
        if state is not None and state.real_node is not None and any(is_running(p) for p in state.processes):
            return state.name
    return None


def _run(argv: Sequence[str], what: str) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RealNodeError(
            f"{what} failed: `{' '.join(argv)}`: {result.stderr.strip() or result.stdout.strip()}"
        )
    return result.stdout


def prepare_host(network: NodeNetwork, layout: NodeLayout) -> None:
    """Record the machine's state, then add the bridge and the rule that keeps pod traffic here."""
    taken = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    if f" {network.gateway}/" in taken:
        raise RealNodeError(
            f"address {network.gateway} is already in use on this machine (`ip addr`); stop what uses it or "
            "choose another subnet"
        )
    layout.create()
    HostSnapshot.take().save(layout.snapshot)
    _run(["ip", "link", "add", network.bridge, "type", "bridge"], "creating the bridge")
    _run(
        ["ip", "addr", "add", f"{network.gateway}/{network.prefix}", "dev", network.bridge],
        "addressing the bridge",
    )
    _run(["ip", "link", "set", network.bridge, "up"], "bringing the bridge up")
    _run(
        [
            "iptables",
            "-I",
            "FORWARD",
            "-i",
            network.bridge,
            "!",
            "-o",
            network.bridge,
            "-m",
            "comment",
            "--comment",
            DROP_COMMENT,
            "-j",
            "DROP",
        ],
        "adding the rule that drops pod traffic leaving the machine",
    )


def write_node_files(state: RealNodeState, ports: NodePorts, kubeconfig: Path, ca_cert: Path) -> None:
    network, layout = state.network, state.layout
    layout.create()
    cni_dir = cni_bin_dir() or CNI_BIN_DIRS[0]
    layout.containerd_config.write_text(containerd_config(layout, cni_dir))
    (layout.cni_conf_dir / "10-grok-devcluster.conflist").write_text(cni_conflist(network, layout))
    layout.kubelet_config.write_text(kubelet_config(network, layout, ports, ca_cert))
    layout.resolv_conf.write_text(f"nameserver {network.gateway}\n")
    layout.proxy_config.write_text(kube_proxy_config(network, ports, kubeconfig, state.node_name))
    layout.corefile.write_text(corefile(network, ports, kubeconfig))


def ctr(layout: NodeLayout, *args: str) -> list[str]:
    return ["ctr", f"--address={layout.containerd_socket}", f"--namespace={NAMESPACE}", *args]


def wait_containerd(layout: NodeLayout, timeout_s: float, failed: Callable[[], str | None]) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if layout.containerd_socket.exists():
            probe = subprocess.run(ctr(layout, "version"), capture_output=True, check=False)
            if probe.returncode == 0:
                return
        reason = failed()
        if reason:
            raise RealNodeError(f"containerd did not start: {reason}")
        if time.monotonic() > deadline:
            raise RealNodeError(
                f"containerd did not answer on {layout.containerd_socket} within {timeout_s:.0f}s"
            )
        time.sleep(0.1)


def imported_refs(layout: NodeLayout) -> set[str]:
    return set(_run(ctr(layout, "images", "list", "--quiet"), "listing images").split())


def import_archive(layout: NodeLayout, archive: Path, ref: str) -> None:
    """Import one OCI archive (unless containerd has `ref` from an earlier run) and make sure it is
    known by `ref` (what the pods ask for); older tags of the same image are removed."""
    name, _ = ref.rsplit(":", 1)
    present = imported_refs(layout)
    for stale in sorted(r for r in present if r.startswith(f"{name}:") and r != ref):
        _run(ctr(layout, "images", "remove", stale), f"removing the older image {stale}")
    if ref in present:
        return
    _run(
        ctr(layout, "images", "import", f"--base-name={name}", str(archive)),
        f"importing {archive.name}",
    )
    if ref not in imported_refs(layout):
        raise RealNodeError(
            f"importing {archive} did not yield image {ref}; `ctr images list` shows {sorted(imported_refs(layout))}"
        )


def import_images(state: RealNodeState, images: Sequence[BuiltImage], progress: TextIO = sys.stderr) -> float:
    """Import the pause image and `images` into the node's containerd; returns the seconds taken."""
    started = time.monotonic()
    import_archive(state.layout, ensure_pause_image(PAUSE_IMAGE, progress), PAUSE_IMAGE)
    for image in images:
        import_archive(state.layout, image.archive, image.ref)
        state.images[image.name] = image.ref
    return time.monotonic() - started


def _ctr_each(layout: NodeLayout, ids: list[str], *args: str) -> list[int]:
    """Run `ctr ARGS ID` for every id at once; their exit codes."""
    runs = [
        subprocess.Popen(ctr(layout, *args, i), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for i in ids
    ]
    return [run.wait() for run in runs]


def _kill_containers(layout: NodeLayout) -> None:
    """SIGKILL every container's init (its PID namespace dies with it), delete tasks and containers."""
    if not layout.containerd_socket.exists():
        return
    listed = subprocess.run(
        ctr(layout, "tasks", "list", "--quiet"), capture_output=True, text=True, check=False
    )
    tasks = listed.stdout.split()
    _ctr_each(layout, tasks, "tasks", "kill", "--signal=SIGKILL")
    for _ in range(20):  # a task can be deleted once its init has exited
        codes = _ctr_each(layout, tasks, "tasks", "delete", "--force")
        tasks = [task for task, code in zip(tasks, codes, strict=True) if code != 0]
        if not tasks:
            break
        time.sleep(0.1)
    containers = subprocess.run(
        ctr(layout, "containers", "list", "--quiet"), capture_output=True, text=True, check=False
    )
    _ctr_each(layout, containers.stdout.split(), "containers", "delete")


def _kill_shims(layout: NodeLayout) -> None:
    """Backstop: SIGKILL any runc shim still serving this node's containerd (they outlive it)."""
    marker = str(layout.containerd_socket).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"containerd-shim" in cmdline and marker in cmdline:
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except ProcessLookupError:
                continue


def stop_node_containers(state: RealNodeState) -> list[str]:
    """Kill every container of the node (the kubelet is stopped: nothing restarts them)."""
    _kill_containers(state.layout)
    _kill_shims(state.layout)
    return []


def restore_host(state: RealNodeState) -> list[str]:
    """Undo prepare_host and everything the node's parts did to the machine."""
    _kill_shims(state.layout)
    snapshot_file = state.layout.snapshot
    if not snapshot_file.is_file():
        return [f"no host snapshot at {snapshot_file}; nothing restored"]
    return HostSnapshot.load(snapshot_file).restore()


def node_ready_wait(
    ready: Callable[[], bool], timeout_s: float, failed: Callable[[], str | None], what: str
) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        reason = failed()
        if reason:
            raise RealNodeError(f"{what}: {reason}")
        if time.monotonic() > deadline:
            raise RealNodeError(f"{what} did not happen within {timeout_s:.0f}s")
        time.sleep(0.2)


def node_binaries(binaries: Mapping[str, Path]) -> dict[str, Path]:
    """The node's programs: the Go-built ones from `binaries` and containerd from PATH."""
    found = {name: binaries[name] for name in NODE_BINARIES}
    containerd = shutil.which("containerd")
    if containerd is None:
        raise RealNodeError("containerd is not installed; run `grok-devcluster setup-node` (as root)")
    found["containerd"] = Path(containerd)
    return found
