"""Resolve the worker's configuration: mounted JSON file, then command-line overrides, then env.

Data flow: `--config` (or $GROK_CONFIG_FILE) -> `WorkerConfig` (pydantic; errors name the field) ->
flags such as --preset/--checkpoint/--port override single fields (re-validated) -> the group
environment (`GroupEnv.from_environ`) -> a `ResolvedConfig`. `ConfigError` carries a message the
user can act on; `grok-worker serve` prints it and exits 2.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from grok_worker.contract import (
    Env,
    GroupEnv,
    MeshSpec,
    WorkerConfig,
    default_buckets,
    prefill_bucket_problem,
    sequence_problem,
)
from grok_worker.contract_version import ContractVersionError, accepted_fields
from grok_worker.model_config import InvalidDimsError


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ResolvedConfig:
    worker: WorkerConfig
    group: GroupEnv
    buckets: tuple[int, ...]

    @property
    def mesh(self) -> MeshSpec:
        return self.group.mesh or self.worker.mesh


def _format_validation(source: str, err: ValidationError) -> str:
    problems = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(root)"
        broken = e.get("ctx", {}).get("error")
        if isinstance(broken, InvalidDimsError):  # a dimension rule: one problem per field
            problems += [f"{field}.{p}" for p in broken.problems]
        else:
            problems.append(f"{field}: {e['msg']} (got {e.get('input')!r})")
    return f"{source}: " + "; ".join(problems)


#: flag attribute -> path of the WorkerConfig field it overrides (section, [subsection,] field)
OVERRIDES: dict[str, tuple[str, ...]] = {
    "preset": ("model", "preset"),
    "checkpoint": ("model", "checkpoint_path"),
    "tokenizer": ("model", "tokenizer_path"),
    "quantization": ("model", "quantization"),
    "port": ("serving", "port"),
    "metrics_port": ("serving", "metrics_port"),
    "http_port": ("serving", "http_port"),
    "prefill_chunk": ("serving", "prefill_chunk"),
    "max_batch": ("serving", "max_batch"),
    "max_seq_len": ("serving", "max_seq_len"),
    "max_queue": ("serving", "max_queue"),
    "drain_grace": ("serving", "drain_grace_seconds"),
    "prefill_buckets": ("serving", "prefill_buckets"),
    "tls_cert": ("security", "tls", "cert_file"),
    "tls_key": ("security", "tls", "key_file"),
    "tls_client_ca": ("security", "tls", "client_ca_file"),
    "tokens_dir": ("security", "tokens_dir"),
    "group_secret_file": ("security", "group_secret_file"),
    "bind": ("security", "bind_address"),
    "health_port": ("security", "health_port"),
}


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data.setdefault(key, {})
    data[path[-1]] = value


def load_worker_config(args: argparse.Namespace, environ: dict[str, str] | None = None) -> WorkerConfig:
    env = dict(os.environ if environ is None else environ)
    path = args.config or env.get(Env.CONFIG_FILE, "")
    data: dict[str, Any] = {}
    if path:
        if not Path(path).is_file():
            source = "--config" if args.config else Env.CONFIG_FILE
            raise ConfigError(f"{source}: config file {path} does not exist")
        try:
            WorkerConfig.from_file(path)  # errors name the file's own fields
            # Keep only what the file sets, so "explicitly set" stays visible (model_fields_set);
            # a newer operator's fields this worker does not know are dropped (contract_version.py).
            data = accepted_fields(json.loads(Path(path).read_text()))
        except ValidationError as err:
            raise ConfigError(_format_validation(f"config file {path}", err)) from None
        except ContractVersionError as err:
            raise ConfigError(f"config file {path}: {err}") from None
    for attr, path_ in OVERRIDES.items():
        value = getattr(args, attr, None)
        if value is not None:
            _set(data, path_, value)
    try:
        return WorkerConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation("configuration (file + flags)", err)) from None


def prefill_buckets(config: WorkerConfig) -> tuple[int, ...]:
    """The configured buckets, checked; or powers of two up to half the max sequence length."""
    max_len = config.serving.max_seq_len
    buckets = config.serving.prefill_buckets
    if not buckets:
        return default_buckets(max(1, max_len // 2))
    problem = prefill_bucket_problem(buckets, max_len)
    if problem is not None:
        raise ConfigError(f"serving.prefill_buckets: {problem}")
    return tuple(buckets)


def fit_model_length(worker: WorkerConfig) -> WorkerConfig:
    """Lower the default serving.max_seq_len to the model's max length (an explicit one is checked)."""
    from grok_worker.model_config import config_from_contract

    try:
        model_max = config_from_contract(worker.model).max_seq_len
    except ValueError as err:
        raise ConfigError(f"model: {err}") from None
    serving = worker.serving
    problem = sequence_problem(serving.max_seq_len, model_max)
    if problem is None:
        return worker
    if "max_seq_len" in serving.model_fields_set:
        raise ConfigError(f"serving.max_seq_len: {problem}")
    return worker.model_copy(update={"serving": serving.model_copy(update={"max_seq_len": model_max})})


def resolve(
    args: argparse.Namespace, environ: dict[str, str] | None = None, model_engine: bool = True
) -> ResolvedConfig:
    worker = load_worker_config(args, environ)
    if model_engine:
        worker = fit_model_length(worker)
    try:
        group = GroupEnv.from_environ(environ)
    except (ValueError, ValidationError) as err:
        raise ConfigError(f"group environment: {err}") from None
    return ResolvedConfig(worker, group, prefill_buckets(worker))


def parse_buckets(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--prefill-buckets {text!r}: expected comma-separated integers like 16,32,64"
        ) from None
