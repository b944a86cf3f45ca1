"""Shared pytest fixtures: the real local Kubernetes control plane every integration test uses.

`cluster` (session scope) yields a `grok_devcluster.handle.ClusterHandle`:
    cluster.kubeconfig        admin kubeconfig path (str)
    cluster.server            API server URL
    cluster.kubectl(*args, check=True, input=None, timeout=120) -> CompletedProcess[str]
    cluster.helm(*args, ...)  and cluster.helm_binary / cluster.kubectl_binary (paths)
    cluster.api_client()      kubernetes.client.ApiClient (closed at teardown)
    cluster.add_gpu_nodes(n, gpus=8, prefix="gpu-node") -> new node names, Ready
    cluster.gpu_nodes()       names of the fake GPU nodes (4 x 8 nvidia.com/gpu to start with)
    cluster.env()             os.environ plus KUBECONFIG, for subprocesses such as the operator
    cluster.managed           True when this session started the cluster (kwok, fake nodes)

By default it starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on
loopback (binaries from $KUBEBUILDER_ASSETS, the cache, or a Go build) and stops them all at the
end of the session, also after a failure or Ctrl-C; the processes die with pytest even if it is
killed. GROK_TEST_KUBECONFIG=<path> (or GROK_USE_EXISTING_CLUSTER=1 with KUBECONFIG) runs the
tests against that cluster instead. When the control plane cannot be had the test FAILS.

`namespace` (function scope) is a fresh namespace deleted after the test.

`kueue` (session scope, on request) starts the real Kueue (grok_devcluster.kueue) into the session's
cluster and yields its `KueueRun`; `kueue_namespace` is a fresh namespace Kueue manages. Against an
existing cluster, Kueue must already be installed there (the fixture checks its CRDs).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from grok_devcluster.cluster import DevCluster
    from grok_devcluster.handle import ClusterHandle
    from grok_devcluster.kueue import KueueRun

#: The cluster runs this session started, by name (the `devcluster` fixture hands them out).
_RUNS: dict[str, DevCluster] = {}
# Nodes the fixture's own cluster starts with (tests that add nodes remove them again).
DEFAULT_GPU_NODES = 4
DEFAULT_GPUS_PER_NODE = 8


def _existing_kubeconfig() -> str | None:
    explicit = os.environ.get("GROK_TEST_KUBECONFIG")
    if explicit:
        return explicit
    if os.environ.get("GROK_USE_EXISTING_CLUSTER") == "1":
        kubeconfig = os.environ.get("KUBECONFIG")
        if not kubeconfig:
            pytest.fail("GROK_USE_EXISTING_CLUSTER=1 needs KUBECONFIG to name the cluster's kubeconfig file")
        return kubeconfig
    return None


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterHandle]:
    from grok_devcluster.binaries import ALL_BINARIES, ensure_binaries
    from grok_devcluster.build import BuildError
    from grok_devcluster.cluster import ClusterError, ClusterOptions, start_cluster
    from grok_devcluster.handle import ClusterHandle
    from grok_devcluster.nodes import GpuNodeSpec
    from grok_devcluster.process import is_running

    existing = _existing_kubeconfig()
    try:
        binaries = ensure_binaries(("kubectl", "helm") if existing else ALL_BINARIES)
    except BuildError as err:
        pytest.fail(f"the control-plane binaries are not available: {err}", pytrace=False)
    if existing:
        handle = ClusterHandle.from_kubeconfig(
            existing, kubectl_binary=str(binaries["kubectl"].path), helm_binary=str(binaries["helm"].path)
        )
        try:
            yield handle
        finally:
            handle.close()
        return

    options = ClusterOptions(
        name=f"pytest-{os.getpid()}",
        gpu_nodes=DEFAULT_GPU_NODES,
        node_spec=GpuNodeSpec(gpus=DEFAULT_GPUS_PER_NODE),
        die_with_parent=True,
    )
    try:
        devcluster = start_cluster(options, binaries={name: found.path for name, found in binaries.items()})
    except ClusterError as err:
        pytest.fail(str(err), pytrace=False)
    _RUNS[devcluster.handle.name] = devcluster
    try:
        yield devcluster.handle
    finally:
        _RUNS.pop(devcluster.handle.name, None)
        devcluster.stop()
        survivors = [f"{p.name} (pid {p.pid})" for p in devcluster.state.processes if is_running(p)]
        assert not survivors, f"control-plane processes survived teardown: {survivors}"
        assert not os.path.exists(devcluster.state.root), (
            f"run folder {devcluster.state.root} was not removed"
        )


@pytest.fixture(scope="session")
def devcluster(cluster: ClusterHandle) -> DevCluster:
    """The session's own cluster run (its processes), for tests that kill and restart a component."""
    run = _RUNS.get(cluster.name)
    if run is None:
        pytest.fail("this test restarts control-plane processes: run it against the session's own cluster")
    return run


@pytest.fixture
def namespace(cluster: ClusterHandle) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture(scope="session")
def kueue(cluster: ClusterHandle) -> Iterator[KueueRun | None]:
    from grok_devcluster.binaries import ensure_binaries
    from grok_devcluster.build import BuildError
    from grok_devcluster.kueue import KUEUE_BINARY, KueueError, start_kueue

    if not cluster.managed:
        found = cluster.kubectl("get", "crd", "workloads.kueue.x-k8s.io", check=False)
        if found.returncode != 0:
            pytest.fail("the existing cluster has no Kueue (workloads.kueue.x-k8s.io): install it first")
        yield None
        return
    try:
        binary = ensure_binaries((KUEUE_BINARY,))[KUEUE_BINARY].path
    except BuildError as err:
        pytest.fail(f"the Kueue binary is not available: {err}", pytrace=False)
    folder = Path(tempfile.mkdtemp(prefix="grok-kueue-"))
    try:
        run = start_kueue(cluster, binary, folder, folder / "kueue.log", die_with_parent=True)
    except KueueError as err:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.fail(str(err), pytrace=False)
    try:
        yield run
    finally:
        errors = run.stop()
        shutil.rmtree(folder, ignore_errors=True)
        assert not errors, errors


@pytest.fixture
def kueue_namespace(cluster: ClusterHandle, kueue: KueueRun | None) -> Iterator[str]:
    from grok_devcluster.kueue import label_namespace_managed

    name = f"q-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    label_namespace_managed(cluster, name)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
