"""Render the worker configuration and its ConfigMap (pure).

Data flow: `ValidSpec` → `WorkerConfig` (the contract the worker reads from
`CONFIG_MOUNT_DIR/CONFIG_FILE_NAME`) → ConfigMap JSON; the config's hash goes onto the pod
template (see statefulset.py) so a config change rolls the groups.
"""

from __future__ import annotations

from grok_operator.render.common import Obj, Owner, base_labels, config_map_name, metadata, stable_hash
from grok_operator.render.security import security_section
from grok_operator.validation import ValidSpec, prefill_buckets
from grok_worker.contract import CONFIG_FILE_NAME, ModelSection, ServingSection, WorkerConfig

#: Where the checkpoint volume is mounted in the worker container (read-only).
CHECKPOINT_MOUNT_DIR = "/var/lib/grok/checkpoint"


def _in_checkpoint_volume(relative: str) -> str:
    relative = relative.strip("/")
    return f"{CHECKPOINT_MOUNT_DIR}/{relative}" if relative else CHECKPOINT_MOUNT_DIR


def worker_config(valid: ValidSpec) -> WorkerConfig:
    """The worker's configuration for this spec."""
    spec = valid.spec
    model = spec.model
    return WorkerConfig(
        model=ModelSection(
            preset=model.preset,
            dims=model.dimensions,
            quantization=model.quantization,
            checkpoint_path=_in_checkpoint_volume(model.checkpoint.path),
            checkpoint_verify=model.checkpoint.verify,
            tokenizer_path=_in_checkpoint_volume(model.tokenizer_path) if model.tokenizer_path else "",
        ),
        mesh=valid.mesh,
        serving=ServingSection(
            port=spec.serving.port,
            metrics_port=spec.serving.metrics_port,
            max_batch=spec.serving.max_batch,
            max_seq_len=valid.max_seq_len,
            max_queue=spec.serving.max_queue,
            drain_grace_seconds=float(spec.serving.drain_grace_seconds),
            http_port=spec.serving.http.port if spec.serving.http.enabled else 0,
            prefill_buckets=prefill_buckets(spec),
        ),
        security=security_section(valid),
    )


def config_json(valid: ValidSpec) -> str:
    return worker_config(valid).model_dump_json(indent=2)


def config_hash(valid: ValidSpec) -> str:
    return stable_hash(config_json(valid))


def config_map(owner: Owner, valid: ValidSpec) -> Obj:
    """The ConfigMap every pod of every group mounts."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(owner, config_map_name(owner.name), base_labels(owner.name)),
        "data": {CONFIG_FILE_NAME: config_json(valid)},
    }
