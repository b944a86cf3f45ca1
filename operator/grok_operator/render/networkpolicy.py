"""The NetworkPolicy of each replica group (pure): who may reach which port of its pods.

One policy per group, named like the group and selecting exactly its pods, because the rule that
matters most cannot be written once per GrokDeployment: the jax.distributed coordinator and the
step channel accept only the group's own pods (a podSelector on the group's labels). The other
rules are the same in every group's policy:

    port                     from
    gRPC API, HTTP API       spec.networkPolicy.apiFrom (empty: anyone)
    health (8081)            anyone: kubelet probes come from the node, which a NetworkPolicy
                             cannot name portably (some plugins exempt node traffic, some do not)
    metrics                  pods of namespaces matching metricsNamespaceSelector ({} = all)
    coordinator, step        pods of the same replica group

Ingress only: egress stays open (followers dial the leader, every pod resolves DNS).
"""

from __future__ import annotations

from grok_operator.render.common import Obj, Owner, group_labels, group_name, group_selector, metadata
from grok_operator.render.security import STEP_PORT
from grok_operator.validation import ValidSpec
from grok_worker.contract import DEFAULT_COORDINATOR_PORT, DEFAULT_HEALTH_PORT


def _tcp(*ports: int) -> list[Obj]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def _api_rule(valid: ValidSpec) -> Obj:
    serving = valid.spec.serving
    ports = [serving.port, *([serving.http.port] if serving.http.enabled else [])]
    rule: Obj = {"ports": _tcp(*ports)}
    peers = [peer.model_dump(by_alias=True, exclude_none=True) for peer in valid.spec.network_policy.api_from]
    if peers:
        rule["from"] = peers
    return rule


def network_policy(owner: Owner, valid: ValidSpec, index: int) -> Obj:
    """The NetworkPolicy of replica group `index`."""
    selector = {"matchLabels": group_selector(owner.name, index)}
    policy = valid.spec.network_policy
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(owner, group_name(owner.name, index), group_labels(owner.name, index)),
        "spec": {
            "podSelector": selector,
            "policyTypes": ["Ingress"],
            "ingress": [
                _api_rule(valid),
                {"ports": _tcp(DEFAULT_HEALTH_PORT)},
                {
                    "ports": _tcp(valid.spec.serving.metrics_port),
                    "from": [{"namespaceSelector": dict(policy.metrics_namespace_selector)}],
                },
                {
                    "ports": _tcp(DEFAULT_COORDINATOR_PORT, STEP_PORT),
                    "from": [{"podSelector": selector}],
                },
            ],
        },
    }
