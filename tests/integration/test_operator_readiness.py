"""The operator's readiness and write counters against the real apiserver's refusals.

Readiness: the operator's child watches run with a ServiceAccount that may not list anything;
the real apiserver refuses each LIST (403), and /readyz, served on a real socket, answers 503
naming every kind. Once a Role grants list and watch on those kinds, the watches' retries list
them and /readyz answers 200 — what a user sees as a pod that turns Ready once RBAC is fixed.

Writes: a write the apiserver refuses is counted by kind and HTTP status, beside the answered
writes by verb, which is what `grok_operator_api_write_failures_total` exports.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from grok_operator.child_cache import KINDS
from grok_operator.child_store import ChildStore
from grok_operator.child_watch import ChildWatches
from grok_operator.http_port import HttpPort
from grok_operator.kube import ApiError, KubeApi, load_configuration
from grok_operator.metrics import OperatorMetrics, Snapshot

pytestmark = pytest.mark.cluster

#: The RBAC the child watches need, as the chart grants it (resource names, by API group).
WATCHED = {
    "": ["pods", "services", "configmaps"],
    "apps": ["statefulsets"],
    "networking.k8s.io": ["networkpolicies"],
}


def token_kubeconfig(cluster: Any, token: str, path: Path) -> str:
    """A kubeconfig for the same apiserver that authenticates with `token`."""
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": "u", "user": {"token": token}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    path.write_text(yaml.safe_dump(config))
    return str(path)


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def readyz_until(port: int, status: int, accept: Callable[[str], bool], seconds: float) -> str:
    """Poll /readyz until it answers `status` with a body `accept` takes; that body."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        got, body = await asyncio.to_thread(readyz, port)
        if got == status and accept(body):
            return body
        if loop.time() > deadline:
            raise AssertionError(f"/readyz never answered {status} as expected; last: {got} {body!r}")
        await asyncio.sleep(0.25)


def grant(cluster: Any, namespace: str) -> None:
    rules = [
        {"apiGroups": [group], "resources": kinds, "verbs": ["list", "watch"]}
        for group, kinds in WATCHED.items()
    ]
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "watcher", "namespace": namespace},
        "rules": rules,
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "watcher", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "watcher"},
        "subjects": [{"kind": "ServiceAccount", "name": "watcher", "namespace": namespace}],
    }
    cluster.kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [role, binding]})
    )


async def test_readyz_names_each_refused_watch_until_rbac_lets_it_list(
    cluster: Any, namespace: str, tmp_path: Path
) -> None:
    cluster.kubectl("create", "serviceaccount", "watcher", "-n", namespace)
    token = cluster.kubectl("create", "token", "watcher", "-n", namespace, "--duration=1h").stdout.strip()
    api = KubeApi(load_configuration(token_kubeconfig(cluster, token, tmp_path / "kubeconfig")))
    watches = ChildWatches(api, ChildStore(lambda *_: None))
    port = HttpPort(OperatorMetrics(), lambda: Snapshot(watches=watches.health()))
    number = await port.start("127.0.0.1", 0)
    try:
        watches.ensure(namespace)
        refused = await readyz_until(
            number,
            503,
            lambda body: all(f"{kind} watch (namespace {namespace}) is down" in body for kind in KINDS),
            30,
        )
        assert refused.count("403") == len(KINDS), refused
        await asyncio.to_thread(grant, cluster, namespace)
        await readyz_until(number, 200, lambda body: body == "ok\n", 60)
        assert all(watch.listed and watch.failure is None for watch in watches.health())
    finally:
        await asyncio.to_thread(watches.stop)
        await port.stop()
        api.close()


def test_a_refused_write_is_counted_by_kind_and_status(cluster: Any, namespace: str) -> None:
    api = KubeApi(load_configuration(cluster.kubeconfig))
    bad = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "Not_A_Name", "namespace": namespace},
    }
    try:
        api.apply({**bad, "metadata": {"name": "fine", "namespace": namespace}})
        with pytest.raises(ApiError) as refused:
            api.apply(bad)
        answered, failures = api.write_totals()
    finally:
        api.close()
    assert refused.value.status == 422
    assert answered == {("apply", "ConfigMap"): 2}
    assert failures == {("ConfigMap", "422"): 1}
