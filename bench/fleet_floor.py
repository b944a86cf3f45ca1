"""The floor under figure 13: the control plane alone bringing up what the operator creates.

Figure 13 times N GrokDeployments from the first create to the last Ready, and on a small
machine most of that time is the control plane's own work (the apiserver, the StatefulSet,
endpoint and garbage-collector controllers, the scheduler, the nodes), which any way of creating
those objects pays. This measures that work on the same machine in the same run, on a fresh
cluster of the same size, with no operator and no GrokDeployment:

    render each object's children with the operator's own code (render_children, network_policy;
    owner references dropped: there is no owner) -> apply them with the operator's client
    (server-side apply, its field manager) from as many threads as the operator has reconcile
    slots, in the order a first pass applies them (NetworkPolicy, ConfigMap, client Service,
    StatefulSet) -> follow the pods' watch until every group's pod is Ready.

Seconds from the first apply to the last Ready pod are the baseline of the figure
`..._to_ready_vs_control_plane_alone`: the operator's time to Ready ÷ this floor is what the
operator itself adds (GrokDeployment writes and watches, its status writes, its own CPU).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.followed import Followed
from bench.operator_apply import grok_deployment

Obj = dict[str, Any]


def children_of(name: str, namespace: str, mode: str) -> list[Obj]:
    """What a first pass applies for the bench's GrokDeployment `name`, in its order, unowned."""
    from grok_operator.render import render_children
    from grok_operator.render.common import Owner
    from grok_operator.render.networkpolicy import network_policy
    from grok_operator.validation import ValidSpec, validate

    valid = validate(grok_deployment(name, namespace, mode)["spec"], name=name)
    if not isinstance(valid, ValidSpec):
        raise RuntimeError(f"the bench's GrokDeployment is invalid: {valid}")
    owner = Owner(name=name, namespace=namespace, uid="")
    children = render_children(owner, valid, [0])
    objects = [
        network_policy(owner, valid, 0),
        children.config_map,
        children.client_service,
        *(g.statefulset for g in children.groups),
    ]
    for obj in objects:
        obj["metadata"].pop("ownerReferences", None)
    return objects


def pod_ready(pod: Obj) -> bool:
    """Whether a Pod (the API's JSON) has condition Ready True."""
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(cond.get("type") == "Ready" and cond.get("status") == "True" for cond in conditions)


def _apply_all(api: Any, objects: list[Obj]) -> None:
    for obj in objects:
        api.apply(obj)


def measure_floor(handle: Any, count: int, mode: str, threads: int, timeout: float) -> float | None:
    """Seconds from the first apply to the last of `count` pods Ready (None: not within `timeout`)."""
    from kubernetes import client as k8s

    from grok_operator.kube import KubeApi, load_configuration

    configuration = load_configuration(handle.kubeconfig)
    configuration.connection_pool_maxsize = threads
    api = KubeApi(configuration)
    core = k8s.CoreV1Api(handle.api_client())
    namespace = f"bench-floor-{int(time.time())}"
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    plans = [children_of(f"fleet-{i}", namespace, mode) for i in range(count)]
    pods = Followed(api, "Pod", namespace, value=pod_ready)
    pods.relist()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        applying = [pool.submit(_apply_all, api, objs) for objs in plans]
        while sum(pods.values.values()) < count and time.perf_counter() - start < timeout:
            pods.follow(1.0)
        for done in applying:
            done.result()  # an apply that failed fails the run
    api.close()
    return time.perf_counter() - start if sum(pods.values.values()) >= count else None
