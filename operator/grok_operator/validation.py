"""Semantic validation (pure): turn a raw `.spec` into a `ValidSpec`, or into problems that each
name the field and the fix.

The CRD schema already refuses what it can express (ranges, enums, exactly-one-of rules). This
module checks what needs the model's dimensions or the object's name (and, through preflight.py,
what the apiserver demands of the children), and re-checks the schema's
rules through pydantic, so an object stored under an older CRD is reported, never crashed on.

Data flow: raw spec dict → pydantic `GrokDeploymentSpec` (its `ModelDims` enforces the dimension
rules the worker enforces, reported per field) → `ModelConfig` (preset or dimensions, from
`grok_worker.model_config`) → mesh and serving checks (the length rules are the contract's
functions, the worker's own) → `ValidSpec` for the renderers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from grok_operator.api import GrokDeploymentSpec, api_field_name
from grok_operator.preflight import child_problems, name_problems
from grok_operator.quantity import parse_bytes
from grok_worker.contract import MeshSpec, default_buckets, prefill_bucket_problem, sequence_problem
from grok_worker.model_config import PRESETS, InvalidDimsError, ModelConfig, divisors


@dataclass(frozen=True)
class SpecProblem:
    """One reason the spec cannot be served: the field's path and what to do about it."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class ValidSpec:
    """A spec that passed every check, with what the renderers derive from it."""

    spec: GrokDeploymentSpec
    model: ModelConfig
    mesh: MeshSpec
    device_memory_bytes: int
    #: Clients must present certificates that chain to the TLS Secret's ca.crt (set by
    #: security_children.py, which reads the Secret; validation itself never calls the API).
    tls_client_ca: bool = False

    @property
    def max_seq_len(self) -> int:
        """Tokens per decode slot: serving.maxSequenceLength, or the model's maximum."""
        return self.spec.serving.max_sequence_length or self.model.max_seq_len

    @property
    def devices_per_replica(self) -> int:
        return self.spec.topology.hosts_per_replica * self.spec.topology.gpus_per_host


def validate(raw_spec: Mapping[str, Any], *, name: str = "") -> ValidSpec | list[SpecProblem]:
    """Check a spec as stored by the apiserver; return a `ValidSpec` or every problem found."""
    problems = [SpecProblem(field, message) for field, message in name_problems(name)]
    try:
        spec = GrokDeploymentSpec.model_validate(dict(raw_spec))
    except ValidationError as err:
        return problems + [problem for item in err.errors() for problem in _schema_problems(item)]

    model = _model_config(spec, problems)
    mesh = _mesh(spec, model)
    try:
        memory = parse_bytes(spec.topology.gpu_memory, field="spec.topology.gpuMemory")
    except ValueError as err:
        problems.append(SpecProblem("spec.topology.gpuMemory", str(err)))
        memory = 0
    problems += _mesh_problems(spec, mesh, model)
    problems += _other_problems(spec, model)
    problems += [SpecProblem(field, message) for field, message in child_problems(spec)]
    if problems or model is None:
        return problems
    return ValidSpec(spec=spec, model=model, mesh=mesh, device_memory_bytes=memory)


def _schema_problems(item: ErrorDetails) -> list[SpecProblem]:
    """One pydantic error as problems; broken dimension rules (`InvalidDimsError`, raised while the
    shared `ModelDims` is read) become one problem per dimension field."""
    path = ".".join(str(part) for part in ("spec", *item["loc"]))
    error = item.get("ctx", {}).get("error")
    if isinstance(error, InvalidDimsError):
        return _dims_problems(path, error)
    return [SpecProblem(path, f"{item['msg']} (got {item.get('input')!r})")]


def _dims_problems(path: str, error: InvalidDimsError) -> list[SpecProblem]:
    return [SpecProblem(f"{path}.{api_field_name(p.field)}", p.message) for p in error.problems]


def _model_config(spec: GrokDeploymentSpec, problems: list[SpecProblem]) -> ModelConfig | None:
    model = spec.model
    if model.preset is not None and model.dimensions is not None:
        problems.append(SpecProblem("spec.model", "set either preset or dimensions, not both"))
        return None
    if model.dimensions is not None:
        try:
            return ModelConfig.from_dims("custom", model.dimensions)
        except InvalidDimsError as err:  # the int8 checkpoint layout's rules (ModelConfig.problems)
            problems += _dims_problems("spec.model.dimensions", err)
            return None
    if model.preset is None:
        problems.append(SpecProblem("spec.model", f"set preset (one of {sorted(PRESETS)}) or dimensions"))
        return None
    if model.preset not in PRESETS:
        problems.append(
            SpecProblem(
                "spec.model.preset",
                f"unknown preset {model.preset!r}; use one of {sorted(PRESETS)} or give model.dimensions",
            )
        )
        return None
    return PRESETS[model.preset]


def _mesh(spec: GrokDeploymentSpec, model: ModelConfig | None) -> MeshSpec:
    """The spec's mesh, or the default: the model axis inside a host (its GPUs), experts across hosts
    (only activations cross hosts, see docs/model.md); all devices on "model" when the hosts do not
    divide the experts."""
    topo = spec.topology
    if topo.mesh is None:
        hosts = topo.hosts_per_replica
        if hosts > 1 and model is not None and model.n_experts % hosts == 0:
            return MeshSpec(expert=hosts, model=topo.gpus_per_host)
        return MeshSpec(model=hosts * topo.gpus_per_host)
    return MeshSpec(data=topo.mesh.data, expert=topo.mesh.expert, model=topo.mesh.model)


def _mesh_problems(spec: GrokDeploymentSpec, mesh: MeshSpec, model: ModelConfig | None) -> list[SpecProblem]:
    topo = spec.topology
    devices = topo.hosts_per_replica * topo.gpus_per_host
    problems: list[SpecProblem] = []
    if mesh.size != devices:
        problems.append(
            SpecProblem(
                "spec.topology.mesh",
                f"data×expert×model = {mesh.data}×{mesh.expert}×{mesh.model} = {mesh.size} must equal "
                f"hostsPerReplica×gpusPerHost = {devices}; change the mesh or the topology",
            )
        )
    if model is not None:
        if model.n_q_heads % mesh.model:
            problems.append(
                SpecProblem(
                    "spec.topology.mesh.model",
                    f"the model's {model.n_q_heads} query heads are not divisible by the model axis "
                    f"{mesh.model}; use a model axis among {divisors(model.n_q_heads)}",
                )
            )
        if model.ffn_size % mesh.model:
            problems.append(
                SpecProblem(
                    "spec.topology.mesh.model",
                    f"the expert FFN size {model.ffn_size} is not divisible by the model axis {mesh.model}",
                )
            )
        if model.n_experts % mesh.expert:
            problems.append(
                SpecProblem(
                    "spec.topology.mesh.expert",
                    f"the model's {model.n_experts} experts are not divisible by the expert axis "
                    f"{mesh.expert}; use an expert axis among {divisors(model.n_experts)}",
                )
            )
    if spec.serving.max_batch % mesh.data:
        problems.append(
            SpecProblem(
                "spec.serving.maxBatch",
                f"{spec.serving.max_batch} decode slots cannot be split evenly across the data axis "
                f"{mesh.data}; use a multiple of {mesh.data}",
            )
        )
    return problems


def prefill_buckets(spec: GrokDeploymentSpec) -> tuple[int, ...]:
    """The buckets the spec asks for (empty: the worker's default, powers of two up to half the
    maximum sequence length)."""
    if spec.serving.prefill_buckets:
        return tuple(spec.serving.prefill_buckets)
    if spec.serving.max_prompt_length is not None:
        return default_buckets(spec.serving.max_prompt_length)
    return ()


def _bucket_problems(spec: GrokDeploymentSpec, max_seq_len: int) -> list[SpecProblem]:
    serving = spec.serving
    if serving.prefill_buckets and serving.max_prompt_length is not None:
        return [
            SpecProblem(
                "spec.serving.maxPromptLength",
                "set either prefillBuckets (the largest is the longest prompt) or maxPromptLength, not both",
            )
        ]
    field = "spec.serving.prefillBuckets" if serving.prefill_buckets else "spec.serving.maxPromptLength"
    problem = prefill_bucket_problem(prefill_buckets(spec), max_seq_len)
    return [SpecProblem(field, problem)] if problem else []


def _other_problems(spec: GrokDeploymentSpec, model: ModelConfig | None) -> list[SpecProblem]:
    problems: list[SpecProblem] = []
    requested = spec.serving.max_sequence_length
    if model is not None and requested is not None:
        too_long = sequence_problem(requested, model.max_seq_len)
        problems += [SpecProblem("spec.serving.maxSequenceLength", too_long)] if too_long else []
    if model is not None:
        problems += _bucket_problems(spec, requested or model.max_seq_len)
    if spec.model.checkpoint.uri is not None:
        problems.append(
            SpecProblem(
                "spec.model.checkpoint.uri",
                "object-store checkpoints are not supported by this operator version yet; copy the "
                "checkpoint to a volume and use checkpoint.pvc or checkpoint.hostPath",
            )
        )
    sources = [s for s in (spec.model.checkpoint.pvc, spec.model.checkpoint.host_path) if s is not None]
    if not sources and spec.model.checkpoint.uri is None:
        problems.append(
            SpecProblem("spec.model.checkpoint", "set a checkpoint source: pvc.claimName or hostPath.path")
        )
    for index, var in enumerate(spec.env):
        var_name = str(var.get("name", ""))
        if not var_name:
            problems.append(SpecProblem(f"spec.env[{index}].name", "every environment variable needs a name"))
        elif var_name.startswith("GROK_"):
            problems.append(
                SpecProblem(
                    f"spec.env[{index}].name",
                    f"{var_name} is set by the operator (GROK_* variables carry the group's contract); "
                    "remove it or use another name",
                )
            )
    return problems
