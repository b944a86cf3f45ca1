"""Kueue pod-group metadata on a replica group's pod template (pure).

With a queue (spec.queueName, or the GrokDeployment's `kueue.x-k8s.io/queue-name` label), every pod
of replica group `i` carries Kueue's pod-group label and annotations, so Kueue's pod integration
makes one Workload per group and admits the group whole, against its ClusterQueue's quota:

    labels       kueue.x-k8s.io/queue-name         the LocalQueue
                 kueue.x-k8s.io/pod-group-name     <group>-<template hash>  (= the Workload's name)
                 kueue.x-k8s.io/priority-class     copied from the GrokDeployment, when it has one
                 kueue.x-k8s.io/managed            "true"
    annotations  kueue.x-k8s.io/pod-group-total-count   hostsPerReplica
                 kueue.x-k8s.io/pod-group-serving       "true": lost pods are replaced, the
                                                        Workload never "finishes"
                 kueue.x-k8s.io/pod-suspending-parent   grok-operator: gate without Kueue's pod
                                                        finalizer (see constants.py for why)

The template hash in the group name gives each pod template its own Workload: a rolled group's new
pods never have to match the old pods' Workload. Kueue's webhook adds the admission scheduling gate
to the pods; observe.py reads it back. Plain pod groups rather than Kueue's StatefulSet integration,
which refuses changes to a running StatefulSet's pod template (the operator's rollouts update it in
place, OnDelete) and any change of its replicas; see docs/scheduling.md.
"""

from __future__ import annotations

from grok_operator import constants as c
from grok_operator.render.common import Owner, group_name
from grok_operator.validation import ValidSpec


def queue_name(owner: Owner, valid: ValidSpec) -> str:
    """The LocalQueue that admits the groups: spec.queueName, else the queue-name label, else ""."""
    return valid.spec.queue_name or dict(owner.labels).get(c.KUEUE_QUEUE_NAME_LABEL, "")


def pod_group_name(owner: Owner, index: int, template_hash: str) -> str:
    """Kueue pod group (and Workload) name of group `index`'s pods of one pod template."""
    return f"{group_name(owner.name, index)}-{template_hash}"


def pod_group_metadata(owner: Owner, valid: ValidSpec) -> tuple[dict[str, str], dict[str, str]]:
    """(labels, annotations) that put the pods of a group into one Kueue pod group; empty without
    a queue. The pod-group name itself needs the template hash: see `pod_group_label`."""
    queue = queue_name(owner, valid)
    if not queue:
        return {}, {}
    labels = {c.KUEUE_QUEUE_NAME_LABEL: queue, c.KUEUE_MANAGED_LABEL: "true"}
    priority = dict(owner.labels).get(c.KUEUE_PRIORITY_CLASS_LABEL)
    if priority:
        labels[c.KUEUE_PRIORITY_CLASS_LABEL] = priority
    annotations = {
        c.KUEUE_POD_GROUP_TOTAL_COUNT_ANNOTATION: str(valid.spec.topology.hosts_per_replica),
        c.KUEUE_POD_GROUP_SERVING_ANNOTATION: "true",
        c.KUEUE_POD_SUSPENDING_PARENT_ANNOTATION: c.MANAGED_BY,
    }
    return labels, annotations


def pod_group_label(owner: Owner, valid: ValidSpec, index: int, template_hash: str) -> dict[str, str]:
    """The pod-group-name label of group `index` (empty without a queue)."""
    if not queue_name(owner, valid):
        return {}
    return {c.KUEUE_POD_GROUP_NAME_LABEL: pod_group_name(owner, index, template_hash)}
