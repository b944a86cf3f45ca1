"""Render the Services (pure): one for clients, one headless Service per replica group of more
than one host.

The client Service selects only leaders (host 0 of each group, by the StatefulSet pod-index
label), because followers never talk to clients. It has a ClusterIP, or none when
`spec.serving.clientService` is Headless (DNS then answers with the Ready leaders' addresses). A group's headless Service gives each pod a
stable DNS name (`<group>-<host>.<group>.<namespace>.svc`) and publishes addresses of pods that
are not ready yet, so followers can reach the leader's jax.distributed coordinator while loading.
"""

from __future__ import annotations

from grok_operator.render.common import (
    Obj,
    Owner,
    base_labels,
    client_service_name,
    group_labels,
    group_name,
    group_selector,
    leader_selector,
    metadata,
)
from grok_operator.validation import ValidSpec
from grok_worker.contract import DEFAULT_COORDINATOR_PORT


def client_service(owner: Owner, valid: ValidSpec) -> Obj:
    serving = valid.spec.serving
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, client_service_name(owner.name), base_labels(owner.name)),
        "spec": {
            "type": "ClusterIP",
            **({"clusterIP": "None"} if is_headless_client(valid) else {}),
            "selector": leader_selector(owner.name),
            "ports": [
                {
                    "name": "grpc",
                    "port": serving.port,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": "grpc",
                },
                {"name": "metrics", "port": serving.metrics_port, "targetPort": "metrics", "protocol": "TCP"},
                *_http_ports(valid),
            ],
        },
    }


def is_headless_client(valid: ValidSpec) -> bool:
    """Whether the spec asks for a headless client Service (no ClusterIP)."""
    return valid.spec.serving.client_service == "Headless"


def _http_ports(valid: ValidSpec) -> list[Obj]:
    """The OpenAI-compatible HTTP API's Service port, when it is enabled."""
    http = valid.spec.serving.http
    if not http.enabled:
        return []
    return [
        {"name": "http", "port": http.port, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"}
    ]


def headless_service(owner: Owner, valid: ValidSpec, index: int) -> Obj:
    labels = group_labels(owner.name, index)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, group_name(owner.name, index), labels),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": group_selector(owner.name, index),
            "ports": [
                {"name": "coordinator", "port": DEFAULT_COORDINATOR_PORT, "protocol": "TCP"},
                {"name": "grpc", "port": valid.spec.serving.port, "protocol": "TCP"},
            ],
        },
    }


def endpoint(owner: Owner, valid: ValidSpec) -> str:
    """host:port clients in the cluster dial."""
    return f"{client_service_name(owner.name)}.{owner.namespace}.svc:{valid.spec.serving.port}"
