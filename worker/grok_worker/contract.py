"""The contract between the operator and the worker: one definition, imported by both.

Data flow: the operator renders a `WorkerConfig` from a GrokDeployment's spec, serialises it with
`WorkerConfig.model_dump_json()` into a ConfigMap key (`CONFIG_FILE_NAME`), mounts that ConfigMap at
`CONFIG_MOUNT_DIR`, and sets the environment variables named in `Env` on every pod of a replica group.
The worker reads them back with `WorkerConfig.from_file()` and `GroupEnv.from_environ()`. A model's
explicit dimensions are `grok_worker.model_config.ModelDims`, the type the GrokDeployment API and the
model share, so their fields and rules are defined once.

This module must stay dependency-light (pydantic, `grok_worker.model_config` and the standard library
only): the operator imports it and must never pull in JAX, gRPC or numpy (an import-linter contract
enforces it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from grok_worker.model_config import DIMENSION_MINIMUMS, PRESETS, ModelDims

CONFIG_MOUNT_DIR = "/etc/grok"
#: The config schema's version, "MAJOR.MINOR": a new field takes a new minor, a field removed or
#: changed in meaning a new major (the worker's reading rule: contract_version.py).
SCHEMA_VERSION = "1.0"
CONFIG_FILE_NAME = "worker.json"

#: Ports the worker listens on unless the config says otherwise.
DEFAULT_GRPC_PORT = 50051
DEFAULT_METRICS_PORT = 9090
#: Port of the OpenAI-compatible HTTP API.
DEFAULT_HTTP_PORT = 8000
#: Port the group's leader (host 0) opens for jax.distributed's coordinator service.
DEFAULT_COORDINATOR_PORT = 8476
#: The leader's step-broadcast port is its coordinator port + 1 (the multi-host step channel).
STEP_PORT_OFFSET = 1
DEFAULT_STEP_PORT = DEFAULT_COORDINATOR_PORT + STEP_PORT_OFFSET
#: Plaintext port that serves only grpc.health.v1 (for kubelet probes, which cannot speak TLS).
DEFAULT_HEALTH_PORT = 8081

#: Where the operator mounts the serving TLS Secret (keys tls.crt, tls.key and optional ca.crt).
TLS_MOUNT_DIR = "/var/run/grok/tls"
#: Where the operator mounts ca.crt of spec.serving.tls.clientCASecretName, a client CA of its own.
TLS_CLIENT_CA_MOUNT_DIR = "/var/run/grok/tls-client-ca"
#: Where the operator mounts the API token Secret: every key of it is one accepted bearer token.
TOKENS_MOUNT_DIR = "/var/run/grok/tokens"
#: Where the operator mounts the group's own Secret; GROUP_SECRET_KEY holds the step-channel key.
GROUP_SECRET_MOUNT_DIR = "/var/run/grok/group"
GROUP_SECRET_KEY = "step-key"

Quantization = Literal["int8", "bf16"]


class Env:
    """Names of the environment variables the operator sets on every worker pod."""

    #: Path of the mounted worker config file (JSON of `WorkerConfig`).
    CONFIG_FILE = "GROK_CONFIG_FILE"
    #: host:port of host 0 of this replica group (jax.distributed coordinator).
    COORDINATOR_ADDRESS = "GROK_COORDINATOR_ADDRESS"
    #: Number of processes (hosts) in this replica group.
    NUM_PROCESSES = "GROK_NUM_PROCESSES"
    #: This pod's index in its group, 0 = leader (from the StatefulSet pod-index label).
    PROCESS_ID = "GROK_PROCESS_ID"
    #: Accelerator devices this process owns (GPUs per host).
    LOCAL_DEVICE_COUNT = "GROK_LOCAL_DEVICE_COUNT"
    #: The device mesh, e.g. "data=1,expert=1,model=8"; overrides the config's mesh when set.
    MESH = "GROK_MESH"
    #: Name of the replica group (for logs and metrics labels).
    GROUP_NAME = "GROK_GROUP_NAME"
    #: Name of the pod (downward API), for logs.
    POD_NAME = "GROK_POD_NAME"
    #: IP of the pod (downward API): the health port binds here, not on every interface.
    POD_IP = "GROK_POD_IP"


class ModelSection(BaseModel):
    """Which model to run: a named preset, or explicit dimensions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: str | None = "grok-1"
    #: Explicit dimensions (the shared `ModelDims`: its structural rules apply on reading).
    dims: ModelDims | None = None
    quantization: Quantization = "int8"
    #: Directory that holds the release-format `ckpt-0/` folder (or is it).
    checkpoint_path: str = ""
    #: Check sha256 digests against the manifest beside ckpt-0/ before loading (sizes: always).
    checkpoint_verify: bool = False
    #: SentencePiece model file; empty means the worker serves token ids only.
    tokenizer_path: str = ""


class MeshSpec(BaseModel):
    """Sizes of the logical device-mesh axes; their product is the group's device count."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: int = Field(default=1, ge=1)
    expert: int = Field(default=1, ge=1)
    model: int = Field(default=1, ge=1)

    @property
    def size(self) -> int:
        return self.data * self.expert * self.model

    def to_env(self) -> str:
        return f"data={self.data},expert={self.expert},model={self.model}"

    @classmethod
    def from_env(cls, text: str) -> MeshSpec:
        """Parse "data=1,expert=1,model=8"; raise ValueError naming the bad part."""
        sizes: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, sep, value = part.partition("=")
            if not sep or not value.strip().isdigit():
                raise ValueError(f"{Env.MESH}: {part!r} is not of the form axis=size (e.g. model=8)")
            sizes[name.strip()] = int(value)
        unknown = set(sizes) - {"data", "expert", "model"}
        if unknown:
            raise ValueError(f"{Env.MESH}: unknown axis {sorted(unknown)}; use data, expert, model")
        return cls(**sizes)


class ServingSection(BaseModel):
    """How the worker serves: ports, decode slots, lengths and the request queue."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    port: int = Field(default=DEFAULT_GRPC_PORT, ge=1, le=65535)
    metrics_port: int = Field(default=DEFAULT_METRICS_PORT, ge=0, le=65535)
    #: Port of the OpenAI-compatible HTTP API beside gRPC; 0 = no HTTP API.
    http_port: int = Field(default=0, ge=0, le=65535)
    #: Decode slots: requests decoded together in one batched step.
    max_batch: int = Field(default=8, ge=1)
    #: Longest prompt + completion a request may use; also the KV-cache length per slot. The default,
    #: Grok-1's maximum, is lowered to the model's when the config leaves it unset (server/config.py).
    max_seq_len: int = Field(default=PRESETS["grok-1"].max_seq_len, ge=DIMENSION_MINIMUMS["max_seq_len"])
    #: Requests waiting for a slot beyond which new ones get RESOURCE_EXHAUSTED.
    max_queue: int = Field(default=64, ge=0)
    #: Prompt-length buckets compiled before the worker reports SERVING; empty = powers of two.
    prefill_buckets: tuple[int, ...] = ()
    #: Seconds in-flight requests get to finish after SIGTERM before they are cancelled.
    drain_grace_seconds: float = Field(default=30.0, ge=0)
    max_stop_strings: int = Field(default=8, ge=0)
    #: Prompts whose prefill bucket is longer than this many tokens are prefilled in chunks of it,
    #: with a decode step for the running requests between chunks; 0 = whole prompts at once.
    prefill_chunk: int = Field(default=256, ge=0)


def default_buckets(max_prompt_len: int, smallest: int = 16) -> tuple[int, ...]:
    """Powers of two from `smallest` up to and including `max_prompt_len` (which ends the list)."""
    if max_prompt_len < 1:
        raise ValueError(f"max_prompt_len must be >= 1, got {max_prompt_len}")
    buckets: list[int] = []
    size = min(smallest, max_prompt_len)
    while size < max_prompt_len:
        buckets.append(size)
        size *= 2
    buckets.append(max_prompt_len)
    return tuple(buckets)


def sequence_problem(requested: int, model_max: int) -> str | None:
    """Why a maximum sequence length of `requested` tokens cannot be served by a model whose maximum
    is `model_max`, or None. The one definition of the rule: the operator's validation, the worker's
    start and its engine all use it (each names its own field)."""
    if requested > model_max:
        return f"{requested} exceeds the model's maximum sequence length {model_max}; use at most {model_max}"
    return None


def prefill_bucket_problem(buckets: Sequence[int], max_seq_len: int) -> str | None:
    """Why `buckets` cannot serve requests of `max_seq_len` tokens, or None. The one definition of
    the rule: the operator's validation, the worker's start and its engine all use it."""
    if any(b <= 0 for b in buckets) or list(buckets) != sorted(set(buckets)):
        return f"{list(buckets)} must be positive and strictly ascending"
    if buckets and buckets[-1] >= max_seq_len:
        return (
            f"the largest bucket {buckets[-1]} (the longest prompt) must be below the maximum "
            f"sequence length {max_seq_len}, which leaves room for the completion"
        )
    return None


class TLSSection(BaseModel):
    """TLS on the generation APIs (gRPC and HTTP); all paths empty = plaintext."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cert_file: str = ""
    key_file: str = ""
    #: CA bundle that client certificates must chain to; set = mutual TLS, empty = no client certs.
    client_ca_file: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)


class SecuritySection(BaseModel):
    """Who may call the worker and how its group's members recognise each other."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tls: TLSSection = TLSSection()
    #: Directory of bearer-token files (one token per file, re-read when it changes); empty = none.
    tokens_dir: str = ""
    #: File with the group's shared key that authenticates the step-channel handshake; empty = none.
    group_secret_file: str = ""
    #: Address the generation, HTTP and metrics listeners bind ("" = all interfaces).
    bind_address: str = ""
    #: Plaintext grpc.health.v1-only port for kubelet probes (bound to the pod IP); 0 = none.
    health_port: int = Field(default=0, ge=0, le=65535)


class WorkerConfig(BaseModel):
    """Everything a worker process needs besides the group environment (`GroupEnv`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: str = Field(default=SCHEMA_VERSION, pattern=r"^[0-9]+\.[0-9]+$")
    model: ModelSection = ModelSection()
    mesh: MeshSpec = MeshSpec()
    serving: ServingSection = ServingSection()
    security: SecuritySection = SecuritySection()

    @classmethod
    def from_file(cls, path: str | Path) -> WorkerConfig:
        """Read the JSON config under the versioning rule (contract_version.py); pydantic's
        ValidationError names the offending field."""
        from grok_worker.contract_version import read_config  # the reader builds on this module

        return read_config(Path(path).read_text())


class GroupEnv(BaseModel):
    """The replica-group environment: where the coordinator is and which process this is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    coordinator_address: str = ""
    num_processes: int = Field(default=1, ge=1)
    process_id: int = Field(default=0, ge=0)
    local_device_count: int | None = Field(default=None, ge=1)
    mesh: MeshSpec | None = None
    group_name: str = ""
    pod_name: str = ""
    pod_ip: str = ""

    @property
    def is_leader(self) -> bool:
        return self.process_id == 0

    @property
    def multi_host(self) -> bool:
        return self.num_processes > 1

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> GroupEnv:
        """Read the group environment; raise ValueError naming the variable that is wrong."""
        env = os.environ if environ is None else environ

        def as_int(name: str, default: int | None) -> int | None:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                return int(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not an integer") from None

        num = as_int(Env.NUM_PROCESSES, 1) or 1
        pid = as_int(Env.PROCESS_ID, 0) or 0
        if pid >= num:
            raise ValueError(
                f"{Env.PROCESS_ID}={pid} must be below {Env.NUM_PROCESSES}={num} (host indices start at 0)"
            )
        coordinator = env.get(Env.COORDINATOR_ADDRESS, "").strip()
        if num > 1 and not coordinator:
            raise ValueError(
                f"{Env.COORDINATOR_ADDRESS} must be set (host:port) when {Env.NUM_PROCESSES} > 1"
            )
        mesh_text = env.get(Env.MESH, "").strip()
        return cls(
            coordinator_address=coordinator,
            num_processes=num,
            process_id=pid,
            local_device_count=as_int(Env.LOCAL_DEVICE_COUNT, None),
            mesh=MeshSpec.from_env(mesh_text) if mesh_text else None,
            group_name=env.get(Env.GROUP_NAME, ""),
            pod_name=env.get(Env.POD_NAME, ""),
            pod_ip=env.get(Env.POD_IP, "").strip(),
        )
