"""`grok-devcluster`: build the control-plane binaries and start, inspect and stop local clusters.

    grok-devcluster binaries            find or build every binary, print name, version, source, path
    grok-devcluster setup-node          install the real node's Debian packages (apt-get, as root)
    grok-devcluster images              build the operator and worker images (cached by input hash)
    grok-devcluster up [--nodes 4]      start a cluster that keeps running after the command returns
                   [--real-node]        ... with a real kubelet node running real containers
    grok-devcluster kubeconfig          print its admin kubeconfig path (export KUBECONFIG=$(...))
    grok-devcluster status              list recorded clusters and whether each process is alive
    grok-devcluster down                stop every process by pid and delete the run folder

Each command is a thin shell over binaries.py and cluster.py; errors print one actionable line
(plus the relevant log tail) and exit non-zero.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .binaries import ALL_BINARIES, ON_REQUEST_BINARIES, ensure_binaries
from .build import BuildError
from .cluster import ClusterError, ClusterOptions, find_cluster, start_cluster, stop_cluster
from .images import BuiltImage, ImageError
from .kueue import KueueError
from .nodes import GpuNodeSpec
from .outage import restart_apiserver
from .paths import all_run_state_dirs
from .setup import SetupError
from .versions import VersionsError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grok-devcluster", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    sub = parser.add_subparsers(dest="command", required=True)

    binaries = sub.add_parser(
        "binaries", help="find or build the control-plane binaries and print their paths"
    )
    binaries.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"subset of {', '.join((*ALL_BINARIES, *ON_REQUEST_BINARIES))}",
    )
    binaries.add_argument("--no-build", action="store_true", help="fail instead of building missing binaries")

    sub.add_parser("setup-node", help="install the real node's pinned Debian packages with apt-get (root)")
    images = sub.add_parser("images", help="build the project's images from docker/ (cached by input hash)")
    images.add_argument("names", nargs="*", metavar="NAME", help="grok-operator and/or grok-worker")

    up = sub.add_parser("up", help="start a local cluster and leave it running")
    up.add_argument(
        "--real-node",
        action="store_true",
        help="add a real node (kubelet, containerd, kube-proxy, CoreDNS) and load the project's images",
    )
    up.add_argument("--name", default="default", help="cluster name (several may run at once)")
    up.add_argument("--nodes", type=int, default=4, help="fake GPU nodes to create (default 4)")
    up.add_argument("--gpus", type=int, default=8, help="nvidia.com/gpu per node (default 8)")
    up.add_argument("--gpu-product", default=GpuNodeSpec.gpu_product, help="nvidia.com/gpu.product label")
    up.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for Ready (default 90)")
    up.add_argument(
        "--kueue", action="store_true", help="also start Kueue (built on first use; docs/scheduling.md)"
    )

    for command, text in (
        ("down", "stop a cluster and delete its files"),
        ("kubeconfig", "print the admin kubeconfig path"),
        ("status", "show recorded clusters and their processes"),
    ):
        sub_parser = sub.add_parser(command, help=text)
        sub_parser.add_argument(
            "--name", default=None if command == "status" else "default", help="cluster name"
        )
    outage = sub.add_parser(
        "restart-apiserver", help="kill kube-apiserver, keep it down a while, start it again (fault tests)"
    )
    outage.add_argument("--name", default="default", help="cluster name")
    outage.add_argument("--down-seconds", type=float, default=20.0, help="seconds without an API server")
    return parser


def _binaries(names: Sequence[str], no_build: bool) -> int:
    for found in ensure_binaries(names or ALL_BINARIES, allow_build=not no_build).values():
        print(f"{found.name}\t{found.version}\t{found.source}\t{found.path}")
    return 0


def _setup_node() -> int:
    from .setup import install_node_packages

    install_node_packages()
    return 0


def _images(names: Sequence[str]) -> int:
    from .images import IMAGES, build_images

    for built in build_images(names or tuple(IMAGES), progress=sys.stdout).values():
        origin = "cached" if built.cached else f"built in {built.seconds:.0f}s"
        print(f"{built.ref}\t{origin}\t{built.size_mb:.0f} MB\t{built.archive}")
    return 0


def _up(args: argparse.Namespace) -> int:
    spec = GpuNodeSpec(gpus=args.gpus, gpu_product=args.gpu_product)
    options = ClusterOptions(
        name=args.name,
        gpu_nodes=args.nodes,
        node_spec=spec,
        timeout_s=args.timeout,
        kueue=args.kueue,
        real_node=args.real_node,
    )
    existing = find_cluster(args.name)
    if existing is not None and all(existing.running().values()):
        print(f"cluster {args.name!r} is already running; kubeconfig: {existing.kubeconfig}")
        return 0
    images = _node_images() if args.real_node else []
    cluster = start_cluster(options)
    if images:
        print(
            f"  loaded {len(images)} images in {cluster.load_images(images):.0f}s: {', '.join(i.ref for i in images)}"
        )
    print(f"cluster {args.name!r} is Ready in {cluster.state.startup_s}s at {cluster.server}")
    steps = ", ".join(f"{step} {seconds}s" for step, seconds in cluster.state.milestones.items())
    print(f"  start-up: {steps}")
    print(f"  {args.nodes} fake GPU nodes with {args.gpus} nvidia.com/gpu each")
    if args.kueue:
        print("  Kueue manages pods in namespaces labelled devcluster.grok.dev/kueue=managed")
    if cluster.state.real_node is not None:
        node = cluster.state.real_node
        print(
            f"  real node {node.node_name!r} on bridge {node.bridge} ({node.subnet}); DNS at {node.network.gateway}"
        )
    print(f"  run folder (logs, certificates): {cluster.state.root}")
    print(f"  export KUBECONFIG={cluster.kubeconfig}")
    print(f"  stop it with: grok-devcluster down --name {args.name}")
    return 0


def _node_images() -> list[BuiltImage]:
    from .images import build_images
    from .realnode import check_real_node

    if check_real_node() is not None:
        return []  # start_cluster says why
    return list(build_images(progress=sys.stdout).values())


def _down(name: str) -> int:
    if stop_cluster(name):
        print(f"stopped cluster {name!r}")
    else:
        print(f"no cluster named {name!r} is recorded; nothing to stop")
    return 0


def _kubeconfig(name: str) -> int:
    cluster = find_cluster(name)
    if cluster is None:
        print(
            f"no cluster named {name!r}; start one with `grok-devcluster up --name {name}`", file=sys.stderr
        )
        return 1
    print(cluster.kubeconfig)
    return 0


def _restart_apiserver(name: str, down_seconds: float) -> int:
    cluster = find_cluster(name)
    if cluster is None:
        print(
            f"no cluster named {name!r}; start one with `grok-devcluster up --name {name}`", file=sys.stderr
        )
        return 1
    ready_after = restart_apiserver(cluster, down_seconds)
    print(
        f"kube-apiserver of {name!r} was down {down_seconds:.0f}s, ready {ready_after:.1f}s after its restart"
    )
    return 0


def _status(name: str | None) -> int:
    names = [name] if name else [path.name for path in all_run_state_dirs()]
    if not names:
        print("no clusters recorded")
        return 0
    healthy = True
    for cluster_name in names:
        cluster = find_cluster(cluster_name)
        if cluster is None:
            print(f"{cluster_name}: not recorded")
            healthy = False
            continue
        running = cluster.running()
        up = bool(running) and all(running.values())
        healthy = healthy and up
        print(
            f"{cluster_name}: {'running' if up else 'DEGRADED'} at {cluster.server} (kubeconfig {cluster.kubeconfig})"
        )
        for process in cluster.state.processes:
            print(
                f"  {process.name:<24} pid {process.pid:<8} {'alive' if running[process.name] else 'EXITED'}  log {process.log}"
            )
    return 0 if healthy else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "binaries":
            return _binaries(args.names, args.no_build)
        if args.command == "setup-node":
            return _setup_node()
        if args.command == "images":
            return _images(args.names)
        if args.command == "up":
            return _up(args)
        if args.command == "down":
            return _down(args.name)
        if args.command == "kubeconfig":
            return _kubeconfig(args.name)
        if args.command == "restart-apiserver":
            return _restart_apiserver(args.name, args.down_seconds)
        return _status(args.name)
    except (BuildError, ClusterError, KueueError, VersionsError, ValueError, ImageError, SetupError) as err:
        print(f"grok-devcluster {args.command}: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`... | head`); the cluster itself is unaffected.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(f"grok-devcluster {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
