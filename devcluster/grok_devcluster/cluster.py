"""Start and stop the local control plane: etcd, kube-apiserver, controller-manager, scheduler, kwok.

Data flow of `start_cluster()`: a fresh temporary run folder (layout.py) -> certificates (pki.py)
and the admin kubeconfig (kubeconfig.py) -> each process from components.py is spawned
(process.py) and probed (probes.py), its pid recorded in the state file (state.py) as soon as it
exists -> fake GPU nodes are created (nodes.py via handle.py) -> the cluster is ready when every
node is Ready and the controller-manager has made the `default` ServiceAccount. On any failure
everything started so far is stopped, the run folder removed, and the error shows the tail of the
failing process's log. `stop_cluster()` does the reverse, by pid, from the state file.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from .binaries import ALL_BINARIES, ensure_binaries
from .components import KWOK_CONFIG, SERVICE_CLUSTER_IP_RANGE, ComponentSpec, component_specs
from .handle import ClusterHandle
from .images import BuiltImage
from .kubeconfig import render_kubeconfig, write_kubeconfig
from .kueue import KUEUE_BINARY, start_kueue
from .layout import Ports, RunLayout, free_ports
from .nodeconfig import NodeNetwork, NodePorts, node_specs
from .nodes import GpuNodeSpec
from .paths import all_run_state_dirs
from .pki import generate_pki
from .probes import client_tls, is_healthy, unverified_tls, wait_until
from .process import ProcessRecord, is_running, log_tail, process_start_time, spawn, stop_together
from .realnode import (
    NODE_BINARIES,
    RealNodeState,
    check_real_node,
    import_images,
    node_binaries,
    prepare_host,
    restore_host,
    running_real_node,
    stop_node_containers,
    wait_containerd,
    write_node_files,
)
from .state import RunState, forget_state, load_state, save_state

#: The smallest ClusterIP range a cluster may be given: 16 addresses, 14 of them usable.
MAX_SERVICE_PREFIX = 28


class ClusterError(RuntimeError):
    """The cluster could not be started or stopped; the message says what to do."""


@dataclass(frozen=True)
class ClusterOptions:
    """What to start. `die_with_parent` ties the processes' lives to the calling process."""

    name: str = "default"
    gpu_nodes: int = 4
    node_prefix: str = "gpu-node"
    node_spec: GpuNodeSpec = field(default_factory=GpuNodeSpec)
    timeout_s: float = 90.0
    die_with_parent: bool = False
    # Also start Kueue (kueue.py) once the cluster is Ready.
    kueue: bool = False
    # A real node (kubelet, containerd, kube-proxy, CoreDNS) next to the fake GPU nodes: realnode.py.
    real_node: bool = False
    node_network: NodeNetwork = field(default_factory=NodeNetwork)
    #: The Services' ClusterIP range: the default's first /N (a smaller one runs out sooner, for
    #: tests of what a full range does), so the `kubernetes` Service keeps its address.
    service_range: str = SERVICE_CLUSTER_IP_RANGE

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"cluster name {self.name!r} must be non-empty letters, digits, '-' or '_'")
        if self.gpu_nodes < 0:
            raise ValueError(f"gpu_nodes must be >= 0, got {self.gpu_nodes}")
        check_service_range(self.service_range)


def check_service_range(service_range: str) -> None:
    """Refuse a ClusterIP range that does not start where the default does (the `kubernetes`
    Service's address, in the serving certificate, is its first host) or is too small to hold it."""
    default = ipaddress.IPv4Network(SERVICE_CLUSTER_IP_RANGE)
    try:
        network = ipaddress.ip_network(service_range)
    except ValueError as err:
        raise ValueError(f"service_range {service_range!r}: {err}") from err
    if not (isinstance(network, ipaddress.IPv4Network) and network.subnet_of(default)):
        raise ValueError(f"service_range {service_range!r} must be a subnet of {SERVICE_CLUSTER_IP_RANGE}")
    if network.network_address != default.network_address or network.prefixlen > MAX_SERVICE_PREFIX:
        raise ValueError(
            f"service_range {service_range!r} must start at {default.network_address} and be a "
            f"/{MAX_SERVICE_PREFIX} or larger (the `kubernetes` Service takes its first host)"
        )


class DevCluster:
    """A running local control plane started by this process (or found through its state file)."""

    def __init__(self, state: RunState, popens: dict[str, subprocess.Popen[bytes]] | None = None) -> None:
        self.state = state
        self.handle = ClusterHandle(
            name=state.name,
            kubeconfig=state.kubeconfig,
            server=state.server,
            kubectl_binary=state.kubectl,
            helm_binary=state.helm,
        )
        # Children of this Python process, so they can be reaped; start-up adds each as it spawns it.
        self.popens: dict[str, subprocess.Popen[bytes]] = popens if popens is not None else {}

    @property
    def kubeconfig(self) -> str:
        return self.state.kubeconfig

    @property
    def server(self) -> str:
        return self.state.server

    def running(self) -> dict[str, bool]:
        """Each recorded process and whether it is still alive."""
        for popen in self.popens.values():
            popen.poll()  # reap an exited child so it is not reported as a live zombie
        return {record.name: is_running(record) for record in self.state.processes}

    def stop(self) -> None:
        """Stop every process, then delete the run folder and state file.

        Clients of the API server (controller-manager, scheduler, kwok) stop together first, then
        kube-apiserver, then etcd, so nothing logs errors about a store that vanished under it.
        """
        atexit.unregister(self.stop_at_exit)
        self.handle.close()
        errors: list[str] = []
        if self.state.real_node is not None:
            errors += self._stop_node(self.state.real_node)
        for tier in _stop_tiers(self.state.processes):
            errors += stop_together([(record, self.popens.get(record.name)) for record in tier])
        if self.state.real_node is not None:
            errors += restore_host(self.state.real_node)
        shutil.rmtree(self.state.root, ignore_errors=True)
        forget_state(self.state.name)
        if errors:
            raise ClusterError("; ".join(errors))

    def _stop_node(self, node: RealNodeState) -> list[str]:
        """The node's API clients first, then every container, then containerd."""
        tiers = [[p for p in self.state.processes if p.name in NODE_BINARIES]]
        errors = stop_together([(record, self.popens.get(record.name)) for record in tiers[0]])
        errors += stop_node_containers(node)
        containerd = [p for p in self.state.processes if p.name == "containerd"]
        errors += stop_together([(record, self.popens.get(record.name)) for record in containerd])
        return errors

    def load_images(self, images: list[BuiltImage]) -> float:
        """Import built images into the real node's containerd; returns the seconds it took."""
        if self.state.real_node is None:
            raise ClusterError(f"cluster {self.state.name!r} has no real node to load images into")
        seconds = import_images(self.state.real_node, images)
        save_state(self.state)
        return seconds

    def stop_at_exit(self) -> None:
        _stop_quietly(self)


_STORAGE_TIERS = ("kube-apiserver", "etcd")


def _stop_tiers(processes: list[ProcessRecord]) -> list[list[ProcessRecord]]:
    """Groups to stop one after another: API clients, then kube-apiserver, then etcd."""
    clients = [p for p in processes if p.name not in _STORAGE_TIERS]
    return [clients, *([p for p in processes if p.name == name] for name in _STORAGE_TIERS)]


def _failed_process(popens: Mapping[str, subprocess.Popen[bytes]], state: RunState) -> str | None:
    for record in state.processes:
        popen = popens.get(record.name)
        if popen is not None and popen.poll() is not None:
            return (
                f"{record.name} exited with code {popen.returncode}; last lines of its log {record.log}:\n"
                f"{log_tail(record.log)}"
            )
    return None


def _clear_stale(name: str) -> None:
    previous = load_state(name)
    if previous is None:
        return
    alive = [record.name for record in previous.processes if is_running(record)]
    owner = previous.owner
    if not alive and owner is not None and owner.pid != os.getpid() and is_running(owner):
        raise ClusterError(
            f"a cluster named {name!r} is being started by process {owner.pid}; wait for it or pick another --name"
        )
    if alive:
        raise ClusterError(
            f"a cluster named {name!r} is already running ({', '.join(alive)}; kubeconfig {previous.kubeconfig}). "
            f"Use it, pick another --name, or stop it with `grok-devcluster down --name {name}`."
        )
    shutil.rmtree(previous.root, ignore_errors=True)
    forget_state(name)


class _Startup:
    """The steps of one start-up, sharing the run's state, deadline and failure check."""

    def __init__(
        self,
        cluster: DevCluster,
        layout: RunLayout,
        options: ClusterOptions,
        started: float,
        binaries: Mapping[str, Path],
    ) -> None:
        self.cluster = cluster
        self.binaries = binaries
        self.started = started
        self.state = cluster.state
        self.layout = layout
        self.options = options
        self.deadline = started + options.timeout_s
        self.popens = cluster.popens

    def left(self) -> float:
        return max(1.0, self.deadline - time.monotonic())

    def failure(self) -> str | None:
        return _failed_process(self.popens, self.state)

    def launch(self, spec: ComponentSpec) -> None:
        popen, record = spawn(
            spec.name,
            spec.argv,
            self.layout.log_file(spec.name),
            die_with_parent=self.options.die_with_parent,
        )
        self.popens[spec.name] = popen
        self.state.processes.append(record)
        save_state(self.state)

    def wait_get(self, url: str, context: ssl.SSLContext | None, what: str, milestone: str) -> None:
        wait_until(lambda: is_healthy(url, context), self.left(), what, abort=self.failure)
        self.reached(milestone)

    def reached(self, milestone: str) -> None:
        self.state.milestones[milestone] = round(time.monotonic() - self.started, 2)

    def run(self, specs: list[ComponentSpec], admin_tls: ssl.SSLContext) -> None:
        server = self.state.server
        for spec in (s for s in specs if not s.needs_apiserver):  # etcd, then kube-apiserver
            self.launch(spec)
            if spec.health_url:
                context = admin_tls if spec.health_url.startswith("https") else None
                self.wait_get(
                    spec.health_url,
                    context,
                    f"{spec.name} to answer {spec.health_url}",
                    f"{spec.name} healthy",
                )
        self.wait_get(
            f"{server}/api/v1/namespaces/default",
            admin_tls,
            "the `default` namespace to exist",
            "default namespace",
        )
        later = [s for s in specs if s.needs_apiserver]
        for spec in later:  # controller-manager, scheduler and kwok start together
            self.launch(spec)
        handle = self.cluster.handle
        handle.add_gpu_nodes(
            self.options.gpu_nodes, prefix=self.options.node_prefix, spec=self.options.node_spec, wait=False
        )
        for spec in later:
            if spec.health_url:
                self.wait_get(
                    spec.health_url,
                    unverified_tls(),
                    f"{spec.name} to answer {spec.health_url}",
                    f"{spec.name} healthy",
                )
        self.wait_get(
            f"{server}/api/v1/namespaces/default/serviceaccounts/default",
            admin_tls,
            "kube-controller-manager to create the `default` ServiceAccount",
            "default ServiceAccount",
        )
        names = [f"{self.options.node_prefix}-{i}" for i in range(self.options.gpu_nodes)]
        if self.state.real_node is not None:
            self.start_node(self.state.real_node)
            names.append(self.state.real_node.node_name)
        handle.wait_nodes_ready(names, timeout_s=self.left())
        self.reached("nodes Ready")

    def start_node(self, node: RealNodeState) -> None:
        """containerd (and the pause image), then the kubelet, kube-proxy and CoreDNS."""
        ports = NodePorts(*free_ports(6))
        pki = self.layout.pki
        write_node_files(node, ports, self.layout.kubeconfig, pki / "ca.crt")
        specs = node_specs(
            node_binaries(self.binaries),
            node.network,
            node.layout,
            ports,
            self.layout.kubeconfig,
            node.node_name,
        )
        self.launch(specs[0])
        wait_containerd(node.layout, self.left(), self.failure)
        stop_node_containers(node)  # left in the kept store by a run that was killed
        import_images(node, [])
        self.reached("containerd and pause image")
        for spec in specs[1:]:
            self.launch(spec)
        for spec in specs[1:]:
            if spec.health_url:
                self.wait_get(
                    spec.health_url, None, f"{spec.name} to answer {spec.health_url}", f"{spec.name} healthy"
                )


# Ports are picked free but released before the processes bind them; another program can take
# one in between. Such a start is retried with fresh ports.
_PORT_RACE_ATTEMPTS = 3


def start_cluster(
    options: ClusterOptions | None = None,
    binaries: Mapping[str, Path] | None = None,
    progress: TextIO = sys.stderr,
) -> DevCluster:
    """Start a cluster and return once it is Ready; see the module docstring for the steps.

    `binaries` maps each name in binaries.ALL_BINARIES to a path; by default they are found or built.
    """
    options = options or ClusterOptions()
    if options.real_node:
        reason = check_real_node()
        if reason is not None:
            raise ClusterError(f"cannot add a real node: {reason}")
    if binaries is None:
        wanted = (*ALL_BINARIES, *NODE_BINARIES) if options.real_node else ALL_BINARIES
        binaries = {name: found.path for name, found in ensure_binaries(wanted, progress=progress).items()}
    started = time.monotonic()
    prune_stale_clusters()
    if options.real_node:
        other = running_real_node()
        if other is not None and other != options.name:
            raise ClusterError(
                f"cluster {other!r} already runs a real node on this machine (one fits: it owns the bridge "
                f"and the host paths); stop it with `grok-devcluster down --name {other}` or use it"
            )
    for attempt in range(1, _PORT_RACE_ATTEMPTS + 1):
        _clear_stale(options.name)
        try:
            return _start_once(options, binaries, started)
        except _PortTakenError as err:
            if attempt == _PORT_RACE_ATTEMPTS:
                raise ClusterError(str(err)) from err
            print(
                f"grok-devcluster: a port was taken during start-up, retrying ({err.process})", file=progress
            )
    raise AssertionError("unreachable")


class _PortTakenError(ClusterError):
    def __init__(self, message: str, process: str) -> None:
        super().__init__(message)
        self.process = process


def _start_once(options: ClusterOptions, binaries: Mapping[str, Path], started: float) -> DevCluster:
    layout = RunLayout(Path(tempfile.mkdtemp(prefix=f"grok-devcluster-{options.name}-")))
    layout.create()
    ports = Ports.allocate()
    network = options.node_network
    api_address = network.gateway if options.real_node else "127.0.0.1"
    state = RunState(
        name=options.name,
        root=str(layout.root),
        server=f"https://{api_address}:{ports.apiserver}",
        kubeconfig=str(layout.kubeconfig),
        kubectl=str(binaries["kubectl"]),
        helm=str(binaries["helm"]),
        ports=ports,
        owner=ProcessRecord("owner", os.getpid(), process_start_time(os.getpid()), ""),
        real_node=RealNodeState(
            node_name=f"{options.name}-node",
            bridge=network.bridge,
            subnet=network.subnet,
            root=str(layout.root / "node"),
        )
        if options.real_node
        else None,
    )
    cluster = DevCluster(state, {})
    if options.die_with_parent:
        # Backstop for an interpreter exit without stop(); stop() unregisters it.
        atexit.register(cluster.stop_at_exit)
    try:
        save_state(state)
        if state.real_node is not None:
            prepare_host(network, state.real_node.layout)
        pki = generate_pki(layout.pki, extra_ips=[api_address] if options.real_node else [])
        context_name = f"grok-devcluster-{options.name}"
        kubeconfig = render_kubeconfig(state.server, pki.ca_cert, pki.admin_cert, pki.admin_key, context_name)
        write_kubeconfig(layout.kubeconfig, kubeconfig)
        layout.kwok_config.write_text(KWOK_CONFIG, encoding="utf-8")
        startup = _Startup(cluster, layout, options, started, binaries)
        startup.reached("certificates")
        startup.run(
            component_specs(binaries, layout, ports, api_address, options.service_range),
            client_tls(pki.ca_cert, pki.admin_cert, pki.admin_key),
        )
        if options.kueue:
            _start_kueue(startup)
    except BaseException as err:
        reason = _failed_process(cluster.popens, state)
        _stop_quietly(cluster)
        if isinstance(err, Exception):
            detail = f"\n{reason}" if reason and reason not in str(err) else ""
            message = f"starting cluster {options.name!r} failed: {err}{detail}"
            if "address already in use" in message:
                failed = next((r.name for r in state.processes if r.name in message), "a process")
                raise _PortTakenError(message, failed) from err
            raise ClusterError(message) from err
        raise
    state.startup_s = round(time.monotonic() - started, 2)
    save_state(state)
    return cluster


def _start_kueue(startup: _Startup) -> None:
    """Start Kueue into the run (its process recorded like the others, so `down` stops it)."""
    binary = ensure_binaries((KUEUE_BINARY,))[KUEUE_BINARY].path

    def record(popen: subprocess.Popen[bytes], process: ProcessRecord) -> None:
        startup.popens[process.name] = popen
        startup.state.processes.append(process)
        save_state(startup.state)

    start_kueue(
        startup.cluster.handle,
        binary,
        startup.layout.root / "kueue",
        startup.layout.log_file(KUEUE_BINARY),
        die_with_parent=startup.options.die_with_parent,
        timeout_s=max(60.0, startup.left()),
        on_spawn=record,
    )
    startup.reached("kueue ready")


def _stop_quietly(cluster: DevCluster) -> None:
    try:
        cluster.stop()
    except ClusterError as err:
        print(f"grok-devcluster: {err}", file=sys.stderr)


def prune_stale_clusters() -> list[str]:
    """Forget recorded clusters whose starter and processes are all gone (e.g. a killed pytest).

    Their processes are already dead (the kernel kills a fixture's processes with pytest); this
    removes the leftover run folders and state files. Returns the names pruned.
    """
    pruned = []
    for folder in all_run_state_dirs():
        try:
            state = load_state(folder.name)
        except RuntimeError:
            continue  # unreadable: leave it for a human, `down` explains what to do
        if state is None:
            continue
        if (state.owner is not None and is_running(state.owner)) or any(
            is_running(p) for p in state.processes
        ):
            continue
        if state.owner is None and not state.processes:
            continue  # written by an older version mid-start: cannot tell, keep it
        if state.real_node is not None:  # its containers outlive it, and the machine needs restoring
            stop_node_containers(state.real_node)
            restore_host(state.real_node)
        shutil.rmtree(state.root, ignore_errors=True)
        forget_state(state.name)
        pruned.append(state.name)
    return pruned


def find_cluster(name: str) -> DevCluster | None:
    """The recorded cluster called `name`, or None."""
    state = load_state(name)
    return DevCluster(state) if state is not None else None


def stop_cluster(name: str) -> bool:
    """Stop the recorded cluster `name`; False if none was recorded."""
    cluster = find_cluster(name)
    if cluster is None:
        return False
    cluster.stop()
    return True
