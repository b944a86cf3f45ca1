"""The GrokDeployment spec as pydantic models: the single source of the API.

Data flow: `crd.py` turns these models into the CRD's openAPIV3Schema (each attribute docstring
becomes the `description` that `kubectl explain` shows; `x-kubernetes-validations` below become CEL
rules the apiserver enforces); the reconciler parses a live object's `.spec` back into
`GrokDeploymentSpec` and renders children from it. Rules a schema cannot state (they need the
model's dimensions) live in `validation.py`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from grok_operator.constants import DEFAULT_IMAGE
from grok_worker.contract import DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT, DEFAULT_METRICS_PORT
from grok_worker.model_config import DIMENSION_MINIMUMS, DIMENSION_NAMES, PRESETS, ModelDims

#: Most replica groups of one GrokDeployment: 1024 groups of 8 GPUs is 8192 GPUs (several Grok-1
#: fleets), while the children's names stay within their 63-character budget (preflight.py).
MAX_REPLICAS = 1024

#: A Kubernetes resource quantity such as "80Gi", "24G" or "81920Mi".
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"


def _cel(*rules: tuple[str, str, str]) -> dict[str, Any]:
    """CEL rules as (rule, message, fieldPath) for a model's `json_schema_extra`."""
    return {
        "x-kubernetes-validations": [
            {"rule": rule, "message": message, **({"fieldPath": path} if path else {})}
            for rule, message, path in rules
        ]
    }


def _free_form_items(description: str) -> dict[str, Any]:
    """Schema of a list of Kubernetes core objects that the apiserver should keep as given."""
    return {
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "description": description}
    }


def api_field_name(name: str) -> str:
    """The API's (camelCase) spelling of a field: `n_kv_heads` -> `nKvHeads`."""
    return to_camel(name)


class ApiModel(BaseModel):
    """Base of every API type: camelCase on the wire, attribute docstrings as descriptions. A
    dataclass used as a field type (`ModelDims`) is validated and described under this same config."""

    model_config = ConfigDict(
        alias_generator=api_field_name,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


class PvcSource(ApiModel):
    """A PersistentVolumeClaim in the GrokDeployment's namespace that holds the checkpoint."""

    claim_name: str = Field(min_length=1)
    """Name of the PersistentVolumeClaim. Many pods mount it at once, so it needs ReadOnlyMany (or ReadWriteMany) access."""


class HostPathSource(ApiModel):
    """A directory on every GPU node (pre-seeded local disk) that holds the checkpoint."""

    path: str = Field(pattern=r"^/")
    """Absolute path of the directory on the node."""


class CheckpointSource(ApiModel):
    """Where the release-format checkpoint (a `ckpt-0/` folder of `tensorNNNNN_000` files) lives. Set exactly one of pvc, hostPath or uri."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "[has(self.pvc), has(self.hostPath), has(self.uri)].filter(x, x).size() == 1",
                "set exactly one checkpoint source: pvc, hostPath or uri",
                "",
            )
        )
    )

    pvc: PvcSource | None = None
    """Read the checkpoint from a PersistentVolumeClaim."""
    host_path: HostPathSource | None = None
    """Read the checkpoint from a directory on the node."""
    uri: str | None = Field(default=None, pattern=r"^[a-z0-9]+://.+")
    """Object-store URI (e.g. s3://bucket/grok-1) to fetch the checkpoint from. Reserved: not supported by this operator version yet; use pvc or hostPath."""
    path: str = ""
    """Directory inside the volume that holds `ckpt-0/` (or is it); empty means the volume root."""
    verify: bool = False
    """Check every file's sha256 against `checkpoint-manifest.json` (beside `ckpt-0/`, written by `grok-worker checkpoint manifest DIR`) before loading; the load fails naming each mismatching file. Reads the whole checkpoint once more on every host. File sizes are always checked when a manifest is present."""


class _QuotesGrok1:
    """Ends the description of each dimension with Grok-1's value, read from the grok-1 preset (the
    descriptions themselves are the `ModelDims` attribute docstrings)."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        properties = handler.resolve_ref_schema(schema)["properties"]
        grok1 = PRESETS["grok-1"]
        for name in DIMENSION_NAMES:
            prop = properties.get(api_field_name(name)) or properties[name]
            prop["description"] = f"{prop['description']} Grok-1 has {getattr(grok1, name)}."
        return schema


class ModelSpec(ApiModel):
    """Which model to serve and where its weights are. Set exactly one of preset or dimensions."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "has(self.preset) != has(self.dimensions)",
                "set exactly one of model.preset (e.g. grok-1) or model.dimensions",
                "",
            )
        )
    )

    preset: str | None = Field(default=None, min_length=1)
    """Name of a built-in model, e.g. grok-1 (the released 314B model). Unknown names are reported in the InvalidSpec condition with the list of presets."""
    dimensions: Annotated[ModelDims, _QuotesGrok1()] | None = None
    """Explicit dimensions, for a model of the Grok-1 architecture that is not a preset. Checked as the worker checks them: nKvHeads must divide nQHeads, expertsPerToken is at most nExperts, headDim is even."""
    quantization: Literal["int8", "bf16"] = "int8"
    """How weights are held in GPU memory: int8 (the release format, dequantised inside each matmul) or bf16 (twice the memory)."""
    checkpoint: CheckpointSource
    """Where the release-format checkpoint lives."""
    tokenizer_path: str = ""
    """Path of the SentencePiece tokenizer.model inside the checkpoint volume (relative to its root). Empty: the worker serves token ids only."""


class MeshAxes(ApiModel):
    """Sizes of the device-mesh axes of one replica group; their product must equal hostsPerReplica × gpusPerHost."""

    data: int = Field(default=1, ge=1)
    """Data-parallel axis: batch slots are split across it, weights are replicated."""
    expert: int = Field(default=1, ge=1)
    """Expert-parallel axis: the experts of each layer are split across it (must divide the expert count)."""
    model: int = Field(default=1, ge=1)
    """Tensor-parallel axis: attention heads and expert FFNs are split across it (must divide the query heads)."""


class TopologySpec(ApiModel):
    """Shape of one replica group: how many hosts (pods), how many GPUs each, and how the devices form a mesh."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "!has(self.mesh) || self.mesh.data * self.mesh.expert * self.mesh.model"
                " == self.hostsPerReplica * self.gpusPerHost",
                "mesh.data × mesh.expert × mesh.model must equal hostsPerReplica × gpusPerHost"
                " (the group's device count); change the mesh or the topology",
                ".mesh",
            )
        )
    )

    hosts_per_replica: int = Field(default=1, ge=1, le=256)
    """Pods (hosts) in one replica group. They join one jax.distributed group; host 0 is the leader that serves clients."""
    gpus_per_host: int = Field(default=8, ge=1, le=64)
    """GPUs requested by each pod (its requests and limits of gpuResourceName)."""
    gpu_resource_name: str = Field(default="nvidia.com/gpu", min_length=1)
    """Extended resource name the device plugin advertises."""
    gpu_memory: str = Field(default="80Gi", pattern=QUANTITY_PATTERN)
    """Memory of one GPU (e.g. 80Gi, 24Gi); the capacity planner checks weights + KV cache + headroom against it."""
    mesh: MeshAxes | None = None
    """Device-mesh axes. Default: model = gpusPerHost (tensor parallelism inside a host) and expert = hostsPerReplica (experts across hosts); every device on model when the hosts do not divide the experts."""


class HttpSpec(ApiModel):
    """The OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, /v1/models, /health) beside gRPC."""

    enabled: bool = True
    """Serve the HTTP API on the leader of each group and expose it on the client Service."""
    port: int = Field(default=DEFAULT_HTTP_PORT, ge=1, le=65535)
    """Port of the HTTP API (container and client Service)."""


class TlsSpec(ApiModel):
    """TLS on the generation APIs (gRPC and HTTP) of every leader."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "!has(self.clientCASecretName) || self.clientCertificates != 'None'",
                "clientCASecretName names a CA for client certificates, so clientCertificates cannot be"
                " None; remove clientCASecretName for server-only TLS",
                ".clientCASecretName",
            )
        )
    )

    secret_name: str = Field(min_length=1, max_length=253)
    """A kubernetes.io/tls Secret in this namespace (keys tls.crt and tls.key, and ca.crt for client certificates), e.g. from `kubectl create secret tls NAME --cert=... --key=...` or cert-manager. Missing Secret: reported in the Ready condition."""
    client_certificates: Literal["Auto", "Required", "None"] = "Auto"
    """Whether clients must present a certificate (mutual TLS) that chains to the client CA: the Secret's ca.crt, or clientCASecretName's. Auto: required when there is a client CA. cert-manager's CA and self-signed issuers write ca.crt, and adding or removing it rolls the replica groups. Required: always; a Secret without ca.crt is refused in the Ready condition and the running groups are left as they are, so mutual TLS never turns off by itself. None: server-only TLS; ca.crt is ignored and not mounted."""
    client_ca_secret_name: str | None = Field(
        default=None, alias="clientCASecretName", min_length=1, max_length=253
    )
    """A Secret in this namespace whose ca.crt is the CA bundle client certificates must chain to, in place of the TLS Secret's ca.crt: for clients whose certificates come from another CA than the server's (e.g. a trust-manager Bundle written to a Secret). Only ca.crt is mounted, so a Secret that also holds a CA's key never brings it to a pod. Clients must then present a certificate (clientCertificates Auto or Required). Missing Secret: reported in the Ready condition."""


class AuthSpec(ApiModel):
    """Bearer-token authentication of the generation APIs."""

    token_secret_name: str = Field(min_length=1, max_length=253)
    """An Opaque Secret in this namespace; the value of every key is one accepted token (callers send `authorization: Bearer <token>`). The workers pick up changed keys without a restart. Missing Secret: reported in the Ready condition."""


class ServingSpec(ApiModel):
    """How each replica group serves requests."""

    port: int = Field(default=DEFAULT_GRPC_PORT, ge=1, le=65535)
    """gRPC port of the generation API (kubelet probes use the separate plaintext health port 8081)."""
    metrics_port: int = Field(default=DEFAULT_METRICS_PORT, ge=1, le=65535)
    """Port of the Prometheus metrics endpoint."""
    max_batch: int = Field(default=8, ge=1, le=4096)
    """Decode slots: requests decoded together in one batched step. Sizes the KV cache with maxSequenceLength."""
    max_sequence_length: int | None = Field(default=None, ge=DIMENSION_MINIMUMS["max_seq_len"], le=1048576)
    """Longest prompt + completion of one request; also the KV-cache length of each slot. Default: the model's maximum (8192 for Grok-1)."""
    client_service: Literal["ClusterIP", "Headless"] = "ClusterIP"
    """How clients reach the replica groups' leaders. ClusterIP: one virtual IP, balanced by kube-proxy per connection. Headless: no ClusterIP (none is allocated, so a fleet never exhausts the service range); DNS returns each Ready leader's address and the client balances (gRPC with the round_robin policy, as `grok` does, spreads requests over every group). Changing it replaces the Service."""
    max_queue: int = Field(default=64, ge=0)
    """Requests waiting for a slot; beyond it new requests get RESOURCE_EXHAUSTED."""
    drain_grace_seconds: int = Field(default=30, ge=0, le=3600)
    """Seconds in-flight requests get to finish after SIGTERM."""
    prefill_buckets: list[Annotated[int, Field(ge=1, description="A prompt length in tokens.")]] = Field(
        default_factory=list, max_length=64
    )
    """Prompt lengths (tokens, ascending) the workers compile prefill for before serving; a prompt is padded to the smallest that holds it, and the largest is the longest prompt accepted. Each must be below maxSequenceLength. Default: powers of two up to maxPromptLength."""
    max_prompt_length: int | None = Field(default=None, ge=1)
    """Longest prompt accepted, in tokens (the largest prefill bucket; buckets are the powers of two below it). Below maxSequenceLength. Default: half of it. Not together with prefillBuckets."""
    http: HttpSpec = HttpSpec()
    """The OpenAI-compatible HTTP API, sharing the engine and the request queue with gRPC."""
    tls: TlsSpec | None = None
    """Serve the gRPC and HTTP APIs over TLS (and mutual TLS, per tls.clientCertificates). Default: plaintext."""
    auth: AuthSpec | None = None
    """Require a bearer token on the gRPC and HTTP APIs (health and reflection stay open). Default: no tokens."""


class RolloutSpec(ApiModel):
    """How a spec change is rolled out, counted in whole replica groups."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "self.maxUnavailable + self.maxSurge >= 1",
                "maxUnavailable + maxSurge must be at least 1, or a rollout could never start",
                "",
            )
        )
    )

    max_unavailable: int = Field(default=1, ge=0)
    """Replica groups that may be down at once during a rollout (below spec.replicas ready groups)."""
    max_surge: int = Field(default=0, ge=0)
    """Extra replica groups that may be created above spec.replicas during a rollout."""


class FailurePolicySpec(ApiModel):
    """What happens when a pod of a replica group fails, restarts or disappears."""

    action: Literal["RecreateGroup", "Ignore"] = "RecreateGroup"
    """RecreateGroup: delete and recreate every pod of the group (a jax.distributed group cannot re-admit one lost process). Ignore: leave the group as it is."""
    backoff_seconds: int = Field(default=10, ge=0, le=3600)
    """Wait before recreating the same group again; doubles after each recreation, up to 300 s."""
    restart_policy: Literal["RecreateGroupOnPodRestart", "RecreateGroupAfterStart", "None"] = (
        "RecreateGroupAfterStart"
    )
    """Which container restarts fail a group (LeaderWorkerSet's names). RecreateGroupAfterStart: only restarts after the group first became Ready (before that the startup probe's budget governs). RecreateGroupOnPodRestart: any restart. None: restarts never do (a failed or lost pod still does)."""


class NetworkPeer(ApiModel):
    """Pods allowed to call the API: those matching both selectors that are given."""

    model_config = ConfigDict(
        json_schema_extra=_cel(
            (
                "has(self.namespaceSelector) || has(self.podSelector)",
                "a peer needs namespaceSelector, podSelector or both",
                "",
            )
        )
    )

    namespace_selector: dict[str, Any] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """Namespaces (a metav1.LabelSelector; {} = every namespace). Alone: every pod in them."""
    pod_selector: dict[str, Any] | None = Field(
        default=None, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """Pods (a metav1.LabelSelector). Alone: pods in this GrokDeployment's namespace."""


class NetworkPolicySpec(ApiModel):
    """The NetworkPolicy of each replica group (needs a network plugin that enforces NetworkPolicy)."""

    enabled: bool = True
    """Create a NetworkPolicy per replica group: coordinator and step ports only from the group's own pods, the API from apiFrom, metrics from metricsNamespaceSelector, the health port from anywhere. false removes them."""
    api_from: list[NetworkPeer] = Field(default_factory=list)
    """Who may reach the gRPC and HTTP API ports. Empty: anyone, in or outside the cluster."""
    metrics_namespace_selector: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """Namespaces whose pods may scrape the metrics port (a metav1.LabelSelector, e.g. {matchLabels: {kubernetes.io/metadata.name: monitoring}}). Empty: every namespace."""


class PodSecuritySpec(ApiModel):
    """Identity of the worker processes. The pods always run as non-root, without privilege escalation or capabilities, with seccomp RuntimeDefault and a read-only root filesystem (the Pod Security Standard "restricted")."""

    run_as_user: int = Field(default=65532, ge=1, le=2147483647)
    """UID of the worker process (the worker image's own user is 65532); never 0."""
    run_as_group: int = Field(default=65532, ge=0, le=2147483647)
    """Primary GID of the worker process."""
    fs_group: int = Field(default=65532, ge=0, le=2147483647)
    """Group that owns the mounted volumes (Secrets, emptyDirs), so the worker can read its keys."""


class GrokDeploymentSpec(ApiModel):
    """Desired state of a GrokDeployment: a model, a topology and a number of replica groups."""

    replicas: int = Field(default=1, ge=0, le=MAX_REPLICAS)
    """Number of replica groups. Each group is hostsPerReplica pods serving one copy of the model. At most 1024: a larger fleet is better split into several GrokDeployments (one object's groups are reconciled by one loop, and each group costs a StatefulSet, a Service and its pods)."""
    image: str = Field(default=DEFAULT_IMAGE, min_length=1)
    """Worker container image (runs `grok-worker serve`)."""
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """When the kubelet pulls the image."""
    model: ModelSpec
    """The model and its checkpoint."""
    topology: TopologySpec = TopologySpec()
    """Hosts, GPUs and mesh of one replica group."""
    serving: ServingSpec = ServingSpec()
    """Ports, batch, sequence length and queue of the workers."""
    rollout: RolloutSpec = RolloutSpec()
    """Pace of rollouts, counted in replica groups."""
    failure_policy: FailurePolicySpec = FailurePolicySpec()
    """Reaction to a failed, restarted or lost pod."""
    resources: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """Extra container resources (core/v1 ResourceRequirements, e.g. cpu and memory requests). GPU requests and limits are set from topology."""
    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node labels the worker pods must match."""
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list, json_schema_extra=_free_form_items("A core/v1 Toleration.")
    )
    """Tolerations of the worker pods (core/v1 Toleration), e.g. for tainted GPU nodes."""
    affinity: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True}
    )
    """Affinity of the worker pods (core/v1 Affinity)."""
    priority_class_name: str = ""
    """PriorityClass of the worker pods."""
    scheduler_name: str = ""
    """Scheduler that places the worker pods; empty means the default scheduler."""
    service_account_name: str = ""
    """ServiceAccount of the worker pods; empty means the namespace's default."""
    queue_name: str = Field(default="", max_length=63, pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$")
    """Kueue LocalQueue (in this namespace) that admits the replica groups: each group's pods form one Kueue pod group, admitted whole or not at all and counted against the ClusterQueue's quota (docs/scheduling.md). Empty: the kueue.x-k8s.io/queue-name label of this GrokDeployment, if any; else no queueing."""
    env: list[dict[str, Any]] = Field(
        default_factory=list, json_schema_extra=_free_form_items("A core/v1 EnvVar.")
    )
    """Extra environment variables of the worker container (core/v1 EnvVar). Names starting with GROK_ are set by the operator and cannot be overridden."""
    network_policy: NetworkPolicySpec = NetworkPolicySpec()
    """Who may reach the workers' ports (docs/security.md)."""
    pod_security: PodSecuritySpec = PodSecuritySpec()
    """UID, GID and fsGroup of the worker pods, which always run restricted (docs/security.md)."""
    shared_memory_size: str = Field(default="8Gi", pattern=QUANTITY_PATTERN)
    """Size limit of the memory-backed /dev/shm (NCCL and JAX use it between GPUs of a host); counts against the pod's memory."""
