"""Names the operator shares with its users and its children: the API group, labels, annotations,
condition types, reasons and phases.

Everything a user can see in `kubectl get -o yaml` (a label key, a condition reason) is spelled once
here, so renderers, the planner, the status writer and the tests agree on it.
"""

from __future__ import annotations

from typing import Final

GROUP: Final = "serving.grok.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "GrokDeployment"
PLURAL: Final = "grokdeployments"
SINGULAR: Final = "grokdeployment"
SHORT_NAMES: Final = ("grokd", "gd")
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

#: kopf's finalizer on every GrokDeployment (it stops the object's loop before the object goes).
FINALIZER: Final = f"{GROUP}/operator"
#: The one field manager every write of the operator goes through (server-side apply).
FIELD_MANAGER: Final = "grok-operator"
#: Image used when a GrokDeployment names none.
DEFAULT_IMAGE: Final = "ghcr.io/grok-operator/grok-worker:0.1.0"
#: Name of the worker container in every pod.
WORKER_CONTAINER: Final = "worker"

# --- labels -----------------------------------------------------------------------------------
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
#: Name of the owning GrokDeployment; every child and every pod carries it.
LABEL_DEPLOYMENT: Final = f"{GROUP}/deployment"
#: Name of the replica group (the StatefulSet) a pod or headless Service belongs to.
LABEL_GROUP: Final = f"{GROUP}/group"
#: Index of the replica group, "0", "1", ...
LABEL_GROUP_INDEX: Final = f"{GROUP}/group-index"
#: Hash of the rendered pod template; a group is up to date when all its pods carry the current one.
LABEL_TEMPLATE_HASH: Final = f"{GROUP}/template-hash"
#: Set by the StatefulSet controller on every pod (Kubernetes >= 1.28): the host index in the group.
LABEL_POD_INDEX: Final = "apps.kubernetes.io/pod-index"

APP_NAME: Final = "grok-worker"
MANAGED_BY: Final = "grok-operator"

# --- annotations ------------------------------------------------------------------------------
#: Hash of the whole rendered child; the operator writes a child only when this differs.
ANNOTATION_RENDER_HASH: Final = f"{GROUP}/render-hash"
#: Hash of the worker config on the pod template, so a config change rolls the groups.
ANNOTATION_CONFIG_HASH: Final = f"{GROUP}/config-hash"

# --- Kueue (gang admission and GPU quotas, docs/scheduling.md) ---------------------------------
# Kueue's own names (sigs.k8s.io/kueue pkg/controller/constants and jobs/pod/constants).
#: On a GrokDeployment or its pods: the LocalQueue whose ClusterQueue admits the groups.
KUEUE_QUEUE_NAME_LABEL: Final = "kueue.x-k8s.io/queue-name"
#: On a GrokDeployment or its pods: the WorkloadPriorityClass of the groups' Workloads.
KUEUE_PRIORITY_CLASS_LABEL: Final = "kueue.x-k8s.io/priority-class"
#: Pods with the same value form one pod group: one Workload, admitted whole or not at all.
KUEUE_POD_GROUP_NAME_LABEL: Final = "kueue.x-k8s.io/pod-group-name"
#: How many pods the group has; Kueue admits it once that many exist.
KUEUE_POD_GROUP_TOTAL_COUNT_ANNOTATION: Final = "kueue.x-k8s.io/pod-group-total-count"
#: "true": a serving group; its Workload never finishes when pods end, lost pods are replaced.
KUEUE_POD_GROUP_SERVING_ANNOTATION: Final = "kueue.x-k8s.io/pod-group-serving"
#: Names the controller that has Kueue gate the pods (as Kueue's own StatefulSet integration does):
#: Kueue then gates them without its pod finalizer, which a StatefulSet's pod, whose replacement
#: reuses its name, could never shed (Kueue drops it only once a replacement exists).
KUEUE_POD_SUSPENDING_PARENT_ANNOTATION: Final = "kueue.x-k8s.io/pod-suspending-parent"
#: Kueue reconciles a pod gated for a parent only when it carries this label ("true").
KUEUE_MANAGED_LABEL: Final = "kueue.x-k8s.io/managed"
#: The scheduling gate Kueue's webhook puts on every pod it manages until the group is admitted.
KUEUE_ADMISSION_GATE: Final = "kueue.x-k8s.io/admission"
KUEUE_API_GROUP: Final = "kueue.x-k8s.io"
KUEUE_API_VERSION: Final = f"{KUEUE_API_GROUP}/v1beta2"


class ConditionType:
    """The `type` of the conditions in `status.conditions`."""

    READY: Final = "Ready"
    PROGRESSING: Final = "Progressing"
    DEGRADED: Final = "Degraded"


class Reason:
    """Condition reasons (CamelCase, API conventions); each tells the user a different story."""

    #: The spec cannot be served as written; the message names the field and the fix.
    INVALID_SPEC: Final = "InvalidSpec"
    #: A Secret the spec names (serving.tls.secretName, serving.auth.tokenSecretName) does not
    #: exist; the message names the field and the kubectl command that creates it.
    SECRET_NOT_FOUND: Final = "SecretNotFound"
    #: Weights + KV cache + headroom do not fit the GPUs' memory; the message carries the numbers.
    INSUFFICIENT_DEVICE_MEMORY: Final = "InsufficientDeviceMemory"
    #: The scheduler cannot place a pod (not enough GPUs, taints, selectors); carries its message.
    UNSCHEDULABLE: Final = "Unschedulable"
    #: Kueue has not admitted a replica group yet (quota, priority); carries Kueue's own reason.
    WAITING_FOR_ADMISSION: Final = "WaitingForAdmission"
    #: Pods are scheduled and starting: pulling, loading weights, compiling, joining the group.
    LOADING: Final = "Loading"
    #: A worker keeps failing; its group is recreated (JAX cannot re-admit one lost process).
    CRASH_LOOPING: Final = "CrashLooping"
    #: Every replica group is up to date and serving.
    READY: Final = "Ready"
    #: A spec change is being rolled out group by group.
    ROLLING: Final = "Rolling"
    #: Replica groups are being added or removed.
    SCALING: Final = "Scaling"
    #: Nothing is wrong (used for Degraded=False).
    AS_EXPECTED: Final = "AsExpected"
    #: replicas is 0: nothing to serve.
    SCALED_TO_ZERO: Final = "ScaledToZero"
    #: The apiserver refuses a child (4xx): the message is the server's, with the field.
    REFUSED_BY_API_SERVER: Final = "RefusedByApiServer"
    #: The StatefulSet controller cannot create a group's pods (a missing ServiceAccount or
    #: PriorityClass, a quota, a webhook): its FailedCreate message (dependencies.py); phase
    #: Unschedulable.
    POD_CREATION_FAILED: Final = "PodCreationFailed"
    #: The cluster refused a child for lack of a shared resource (no free Service ClusterIP).
    SERVICE_IPS_EXHAUSTED: Final = "ServiceIPsExhausted"
    #: A ResourceQuota of the namespace refused a child the operator writes (a Service, a
    #: ConfigMap, a StatefulSet...); pods the quota refuses are PodCreationFailed.
    QUOTA_EXCEEDED: Final = "QuotaExceeded"


class EventReason:
    """Reasons of the Kubernetes Events the operator records on a GrokDeployment, besides the
    Warning it posts when the Ready condition's story changes to a refusal (InvalidSpec,
    InsufficientDeviceMemory, RefusedByApiServer, ServiceIPsExhausted...), which carries that
    condition's `Reason`."""

    GROUP_RECREATED: Final = "GroupRecreated"
    GROUP_ROLLED: Final = "GroupRolled"
    #: A child changed by hand was put back to what the spec renders.
    DRIFT_CORRECTED: Final = "DriftCorrected"
    #: The client Service was deleted and created anew: a ClusterIP cannot be added or removed in place.
    SERVICE_REPLACED: Final = "ServiceReplaced"


class Phase:
    """One-word summary in `status.phase` (the PHASE printer column)."""

    #: Blocked by the cluster, not by the spec: a child was refused for lack of room (shortages.py).
    PENDING: Final = "Pending"
    #: Waiting in a Kueue queue for admission.
    QUEUED: Final = "Queued"
    LOADING: Final = "Loading"
    READY: Final = "Ready"
    ROLLING: Final = "Rolling"
    DEGRADED: Final = "Degraded"
    INVALID: Final = "Invalid"
    INFEASIBLE: Final = "Infeasible"
    UNSCHEDULABLE: Final = "Unschedulable"
    SCALED_TO_ZERO: Final = "ScaledToZero"
