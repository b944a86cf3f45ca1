"""Render one replica group's StatefulSet and its pod template (pure).

A group is `hostsPerReplica` pods created together (parallel pod management) that form one
jax.distributed group: host 0 (the leader) runs the coordinator and serves clients. Each pod gets
the group contract through the environment (`grok_worker.contract.Env`): the coordinator's stable
DNS name via the headless Service, the group size, its host index from the StatefulSet pod-index
label (downward API), the mesh and the device count; the worker config comes from the ConfigMap.

The update strategy is OnDelete: the operator, not the StatefulSet controller, decides when a
group's pods are replaced, because a group must be replaced whole (see planner.py). The pod
template's hash is a label on every pod, so the operator can tell updated groups from outdated ones.
"""

from __future__ import annotations

import copy
import functools
import math
from typing import Any

from grok_operator import constants as c
from grok_operator.render import security
from grok_operator.render.common import (
    Obj,
    Owner,
    config_map_name,
    group_labels,
    group_name,
    group_selector,
    metadata,
    stable_hash,
)
from grok_operator.render.config import CHECKPOINT_MOUNT_DIR, config_hash
from grok_operator.render.kueue import pod_group_label, pod_group_metadata
from grok_operator.validation import ValidSpec
from grok_worker.contract import (
    CONFIG_FILE_NAME,
    CONFIG_MOUNT_DIR,
    DEFAULT_COORDINATOR_PORT,
    DEFAULT_HEALTH_PORT,
    Env,
)
from grok_worker.shard_plan import host_read_bytes, max_host_read_bytes

#: Startup probe period; the failure threshold is derived from the checkpoint size.
STARTUP_PERIOD_SECONDS = 10
#: Startup budget every worker gets (process start, device init, compiling the steps).
STARTUP_BASE_SECONDS = 300
#: Checkpoint read rate assumed per host when sizing the startup budget.
STARTUP_READ_BYTES_PER_SECOND = 256 * 2**20


#: The per-host read bytes depend on the model, mesh and hosts only, and every pass renders them:
#: cached (walking the sharding plan was most of a steady-state pass's time at fleet scale).
_max_host_read_bytes = functools.lru_cache(maxsize=256)(max_host_read_bytes)
_host_read_bytes = functools.lru_cache(maxsize=256)(host_read_bytes)


def startup_failure_threshold(valid: ValidSpec) -> int:
    """Startup probe failures allowed: the base budget plus the time to read the checkpoint bytes the
    busiest host of the group reads (the sharding plan's per-host read bytes, which the loader reads),
    and with `checkpoint.verify` the whole checkpoint once more (its sha256 digests)."""
    per_host = _max_host_read_bytes(valid.model, valid.mesh, valid.spec.topology.hosts_per_replica)
    if valid.spec.model.checkpoint.verify:  # every host hashes every whole file before loading
        per_host += _host_read_bytes(valid.model, valid.mesh, 1, 0)  # one host of one: all of it
    budget = STARTUP_BASE_SECONDS + per_host / STARTUP_READ_BYTES_PER_SECOND
    return math.ceil(budget / STARTUP_PERIOD_SECONDS)


def _env(owner: Owner, valid: ValidSpec, index: int) -> list[Obj]:
    group = group_name(owner.name, index)
    coordinator = f"{group}-0.{group}.{owner.namespace}.svc:{DEFAULT_COORDINATOR_PORT}"
    contract: list[Obj] = [
        {"name": Env.CONFIG_FILE, "value": f"{CONFIG_MOUNT_DIR}/{CONFIG_FILE_NAME}"},
        {"name": Env.COORDINATOR_ADDRESS, "value": coordinator},
        {"name": Env.NUM_PROCESSES, "value": str(valid.spec.topology.hosts_per_replica)},
        {
            "name": Env.PROCESS_ID,
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{c.LABEL_POD_INDEX}']"}},
        },
        {"name": Env.LOCAL_DEVICE_COUNT, "value": str(valid.spec.topology.gpus_per_host)},
        {"name": Env.MESH, "value": valid.mesh.to_env()},
        {"name": Env.GROUP_NAME, "value": group},
        {"name": Env.POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        *security.security_env(),
    ]
    return contract + [copy.deepcopy(var) for var in valid.spec.env]


def _resources(valid: ValidSpec) -> Obj:
    topo = valid.spec.topology
    resources: dict[str, Any] = copy.deepcopy(valid.spec.resources)
    gpus = str(topo.gpus_per_host)
    resources.setdefault("requests", {})[topo.gpu_resource_name] = gpus
    resources.setdefault("limits", {})[topo.gpu_resource_name] = gpus
    return resources


def _checkpoint_volume(valid: ValidSpec) -> Obj:
    source = valid.spec.model.checkpoint
    if source.pvc is not None:
        return {
            "name": "checkpoint",
            "persistentVolumeClaim": {"claimName": source.pvc.claim_name, "readOnly": True},
        }
    if source.host_path is not None:
        return {"name": "checkpoint", "hostPath": {"path": source.host_path.path, "type": "Directory"}}
    raise ValueError("spec.model.checkpoint: no volume source (validation should have refused this spec)")


def _grpc_probe(port: int, period: int, failures: int) -> Obj:
    return {
        "grpc": {"port": port},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 5,
    }


def _container(owner: Owner, valid: ValidSpec, index: int) -> Obj:
    spec = valid.spec
    # Probes go to the plaintext health port: kubelet gRPC probes cannot speak TLS.
    port = DEFAULT_HEALTH_PORT
    return {
        "name": c.WORKER_CONTAINER,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["grok-worker", "serve"],
        "ports": [
            {"name": "grpc", "containerPort": spec.serving.port, "protocol": "TCP"},
            {"name": "metrics", "containerPort": spec.serving.metrics_port, "protocol": "TCP"},
            {"name": "coordinator", "containerPort": DEFAULT_COORDINATOR_PORT, "protocol": "TCP"},
            *(
                [{"name": "http", "containerPort": spec.serving.http.port, "protocol": "TCP"}]
                if spec.serving.http.enabled
                else []
            ),
            security.health_port(),
        ],
        "env": _env(owner, valid, index),
        "resources": _resources(valid),
        "startupProbe": _grpc_probe(port, STARTUP_PERIOD_SECONDS, startup_failure_threshold(valid)),
        "readinessProbe": _grpc_probe(port, 5, 3),
        "livenessProbe": _grpc_probe(port, 10, 6),
        "volumeMounts": [
            {"name": "worker-config", "mountPath": CONFIG_MOUNT_DIR, "readOnly": True},
            {"name": "checkpoint", "mountPath": CHECKPOINT_MOUNT_DIR, "readOnly": True},
            *security.volume_mounts(valid),
        ],
        "securityContext": security.container_security_context(),
    }


def _unhashed_pod_template(owner: Owner, valid: ValidSpec, index: int) -> Obj:
    spec = valid.spec
    pod_spec: Obj = {
        "containers": [_container(owner, valid, index)],
        "volumes": [
            {"name": "worker-config", "configMap": {"name": config_map_name(owner.name)}},
            _checkpoint_volume(valid),
            *security.volumes(owner.name, valid, index),
        ],
        "securityContext": security.pod_security_context(valid),
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": spec.serving.drain_grace_seconds + 10,
    }
    optional = {
        "nodeSelector": dict(spec.node_selector),
        "tolerations": copy.deepcopy(spec.tolerations),
        "affinity": copy.deepcopy(spec.affinity),
        "priorityClassName": spec.priority_class_name,
        "schedulerName": spec.scheduler_name,
        "serviceAccountName": spec.service_account_name,
    }
    pod_spec.update({key: value for key, value in optional.items() if value})
    kueue_labels, kueue_annotations = pod_group_metadata(owner, valid)
    template: Obj = {
        "metadata": {
            "labels": {**group_labels(owner.name, index), **kueue_labels},
            "annotations": {c.ANNOTATION_CONFIG_HASH: config_hash(valid), **kueue_annotations},
        },
        "spec": pod_spec,
    }
    return template


def template_hash(owner: Owner, valid: ValidSpec) -> str:
    """Hash of the pod template, the same for every group (group 0's template stands for all):
    it changes with anything that needs new pods (image, config, env, resources, ...) and not
    with replicas, rollout pace or failure policy."""
    return stable_hash(_unhashed_pod_template(owner, valid, 0), length=10)


def pod_template(owner: Owner, valid: ValidSpec, index: int) -> Obj:
    """The pod template of group `index`, labelled with the template hash."""
    template = _unhashed_pod_template(owner, valid, index)
    digest = template_hash(owner, valid)
    template["metadata"]["labels"][c.LABEL_TEMPLATE_HASH] = digest
    template["metadata"]["labels"].update(pod_group_label(owner, valid, index, digest))
    return template


def statefulset(owner: Owner, valid: ValidSpec, index: int) -> Obj:
    """The StatefulSet of replica group `index`."""
    name = group_name(owner.name, index)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(owner, name, group_labels(owner.name, index)),
        "spec": {
            "serviceName": name,
            "replicas": valid.spec.topology.hosts_per_replica,
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "OnDelete"},
            "selector": {"matchLabels": group_selector(owner.name, index)},
            "template": pod_template(owner, valid, index),
        },
    }
