"""A handle on a running cluster: the API every test, the demo and the CLI use to talk to it.

It is the same for a cluster this package started (cluster.py) and for a user's own cluster
given by kubeconfig. It runs the pinned kubectl and helm with the cluster's kubeconfig, hands
out kubernetes Python clients (and closes them in `close()`), and adds fake GPU nodes.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from .components import KWOK_NODE_ANNOTATION, KWOK_NODE_ANNOTATION_VALUE
from .nodes import GpuNodeSpec, render_gpu_node


class CommandError(subprocess.CalledProcessError):
    """kubectl or helm failed; str() shows the command and its stderr."""

    def __str__(self) -> str:
        stderr = (self.stderr or "").strip() or (self.output or "").strip()
        return f"`{' '.join(map(str, self.cmd))}` exited with {self.returncode}: {stderr}"


def _run(
    argv: Sequence[str], *, check: bool, input: str | None, timeout: float, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(argv), input=input, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if check and result.returncode != 0:
        raise CommandError(result.returncode, argv, result.stdout, result.stderr)
    return result


def _condition_true(obj: Any, kind: str) -> bool:
    """Whether a typed API object (a V1Node, a V1CustomResourceDefinition) reports condition
    `kind`=True."""
    conditions = (obj.status.conditions if obj.status else None) or []
    return any(c.type == kind and c.status == "True" for c in conditions)


def node_ready(node: Any) -> bool:
    """Whether a V1Node reports condition Ready=True."""
    return _condition_true(node, "Ready")


def _wait_for_all(
    names: Sequence[str], done: Callable[[set[str]], set[str]], timeout_s: float, interval_s: float
) -> set[str]:
    """Poll `done(pending)` (the names now done) until every name is; returns those still pending
    at `timeout_s` (empty when all were done)."""
    deadline = time.monotonic() + timeout_s
    pending = set(names)
    while True:
        pending -= done(pending)
        if not pending or time.monotonic() > deadline:
            return pending
        time.sleep(interval_s)


class ClusterHandle:
    """Kubeconfig, server URL, pinned kubectl/helm, and helpers for one cluster."""

    def __init__(
        self,
        *,
        name: str,
        kubeconfig: str,
        server: str,
        kubectl_binary: str,
        helm_binary: str,
        managed: bool = True,
    ) -> None:
        # managed: started by grok_devcluster (kwok runs, nodes are fake); False for a user's cluster.
        self.managed = managed
        self.name = name
        self.kubeconfig = kubeconfig
        self.server = server
        self.kubectl_binary = kubectl_binary
        self.helm_binary = helm_binary
        self._clients: list[k8s.ApiClient] = []
        self._own_client: k8s.ApiClient | None = None

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str, *, kubectl_binary: str, helm_binary: str) -> ClusterHandle:
        """A handle on a cluster this package did not start (its current context)."""
        configuration = k8s.Configuration()
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration, persist_config=False
        )
        return cls(
            name="existing",
            kubeconfig=kubeconfig,
            server=str(configuration.host),
            kubectl_binary=kubectl_binary,
            helm_binary=helm_binary,
            managed=False,
        )

    def __repr__(self) -> str:
        return f"ClusterHandle(name={self.name!r}, server={self.server!r}, kubeconfig={self.kubeconfig!r})"

    def env(self) -> dict[str, str]:
        """os.environ with KUBECONFIG pointing at this cluster, for subprocesses (operator, helm)."""
        return {**os.environ, "KUBECONFIG": self.kubeconfig}

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this cluster; raises CommandError when check and it fails."""
        argv = [self.kubectl_binary, f"--kubeconfig={self.kubeconfig}", *args]
        return _run(argv, check=check, input=input, timeout=timeout, env=self.env())

    def helm(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned helm against this cluster; raises CommandError when check and it fails."""
        argv = [self.helm_binary, f"--kubeconfig={self.kubeconfig}", *args]
        return _run(argv, check=check, input=input, timeout=timeout, env=self.env())

    def api_client(self) -> k8s.ApiClient:
        """A kubernetes ApiClient for this cluster; closed by `close()` if the caller does not."""
        configuration = k8s.Configuration()
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=self.kubeconfig, client_configuration=configuration, persist_config=False
        )
        api = k8s.ApiClient(configuration)
        self._clients.append(api)
        return api

    def add_gpu_nodes(
        self,
        n: int,
        gpus: int = 8,
        prefix: str = "gpu-node",
        *,
        spec: GpuNodeSpec | None = None,
        wait: bool = True,
        timeout_s: float = 60.0,
    ) -> list[str]:
        """Create `n` more kwok GPU nodes named `<prefix>-<i>` (after the highest existing index).

        Returns their names; with `wait`, returns once kwok reports every one Ready.
        """
        node_spec = spec if spec is not None else GpuNodeSpec(gpus=gpus)
        core = self._core()
        pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)$")
        taken = [
            int(m.group(1))
            for node in core.list_node().items
            if node.metadata and node.metadata.name and (m := pattern.match(node.metadata.name))
        ]
        start = max(taken, default=-1) + 1
        names = [f"{prefix}-{index}" for index in range(start, start + n)]
        for name in names:
            try:
                # The client sends a plain dict body as is.
                core.create_node(body=render_gpu_node(name, node_spec))  # type: ignore[arg-type]
            except ApiException as err:
                if err.status != 409:  # already there from an earlier call: keep it
                    raise
        if wait:
            self.wait_nodes_ready(names, timeout_s=timeout_s)
        return names

    def gpu_nodes(self) -> list[str]:
        """Names of the fake GPU nodes (annotated for kwok), sorted."""
        nodes = self._core().list_node().items
        return sorted(
            node.metadata.name
            for node in nodes
            if node.metadata
            and node.metadata.name
            and (node.metadata.annotations or {}).get(KWOK_NODE_ANNOTATION) == KWOK_NODE_ANNOTATION_VALUE
        )

    def wait_nodes_ready(self, names: Sequence[str], timeout_s: float = 60.0) -> None:
        """Block until every named node is Ready; TimeoutError lists the ones that are not."""
        core = self._core()

        def ready(_: set[str]) -> set[str]:
            return {
                str(node.metadata.name)
                for node in core.list_node().items
                if node.metadata and node_ready(node)
            }

        pending = _wait_for_all(names, ready, timeout_s, interval_s=0.2)
        if pending:
            raise TimeoutError(
                f"nodes {sorted(pending)} not Ready after {timeout_s:.0f}s; is kwok running and "
                "managing nodes annotated kwok.x-k8s.io/node=fake? See its log in the run folder."
            )

    def wait_crds_established(self, names: Sequence[str], timeout_s: float = 60.0) -> None:
        """Block until every named CustomResourceDefinition is Established; TimeoutError names the
        ones that are not. (Not `kubectl wait --for=condition=Established`: it fails at once, with
        an accessor error, while a just-created CRD has no status.conditions yet.)"""
        extensions = k8s.ApiextensionsV1Api(self._client())

        def established(pending: set[str]) -> set[str]:
            read = extensions.read_custom_resource_definition
            return {name for name in pending if _condition_true(read(name), "Established")}

        pending = _wait_for_all(names, established, timeout_s, interval_s=0.1)
        if pending:
            raise TimeoutError(
                f"CRDs {sorted(pending)} not Established after {timeout_s:.0f}s: "
                "see the kube-apiserver log in the run folder"
            )

    def _client(self) -> k8s.ApiClient:
        """This handle's own ApiClient, made on first use and closed by `close()`."""
        if self._own_client is None:
            self._own_client = self.api_client()
        return self._own_client

    def _core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self._client())

    def close(self) -> None:
        """Close every ApiClient handed out (their connection pools)."""
        self._own_client = None
        while self._clients:
            self._clients.pop().close()  # type: ignore[no-untyped-call]
