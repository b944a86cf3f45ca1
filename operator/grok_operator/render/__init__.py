"""Pure renderers: every child object of a GrokDeployment, as plain dicts, from a `ValidSpec`.

Data flow: `ValidSpec` + `Owner` → `render_children()` → ConfigMap, client Service, and per replica
group a StatefulSet and, when the group spans hosts, a headless Service, each annotated with its
render hash; the I/O layer (`kube.py`) applies only those whose hash differs from the live object's.
"""

from __future__ import annotations

from dataclasses import dataclass

from grok_operator.render.common import Obj, Owner, with_render_hash
from grok_operator.render.config import config_map, worker_config
from grok_operator.render.services import client_service, endpoint, headless_service
from grok_operator.render.statefulset import pod_template, statefulset, template_hash
from grok_operator.validation import ValidSpec


@dataclass(frozen=True)
class GroupChildren:
    """The objects of one replica group."""

    index: int
    #: The headless Service that gives the group's pods DNS names, so followers find their leader;
    #: None for a one-host group, which has no peers (and then costs no Service, Endpoints or
    #: EndpointSlice writes).
    service: Obj | None
    statefulset: Obj


@dataclass(frozen=True)
class Children:
    """Everything the operator owns for one GrokDeployment, hash-annotated."""

    config_map: Obj
    client_service: Obj
    groups: tuple[GroupChildren, ...]
    template_hash: str


def render_children(owner: Owner, valid: ValidSpec, group_indices: list[int]) -> Children:
    """Render the shared children and the groups listed in `group_indices`."""
    return Children(
        config_map=with_render_hash(config_map(owner, valid)),
        client_service=with_render_hash(client_service(owner, valid)),
        groups=tuple(
            GroupChildren(
                index=i,
                service=(
                    with_render_hash(headless_service(owner, valid, i))
                    if valid.spec.topology.hosts_per_replica > 1
                    else None
                ),
                statefulset=with_render_hash(statefulset(owner, valid, i)),
            )
            for i in group_indices
        ),
        template_hash=template_hash(owner, valid),
    )


__all__ = [
    "Children",
    "GroupChildren",
    "Obj",
    "Owner",
    "endpoint",
    "pod_template",
    "render_children",
    "statefulset",
    "template_hash",
    "worker_config",
]
