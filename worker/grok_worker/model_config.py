"""Dimensions of a Grok-1-architecture model, its presets, and the byte counts derived from them.

This module is the single description of "which tensors a model has, with what shapes": the JAX
model (`grok_worker.model`) allocates from it, the checkpoint reader and writer
(`grok_worker.checkpoint`) check every file against it, and the operator's capacity planner reads
byte counts from it. It is standard library only (plus `annotated_types`, the constraint markers
pydantic reads), so the operator can import it without JAX.

`ModelDims` is the one definition of the ten dimensions and of their structural rules: the worker
contract (`ModelSection.dims`) and the GrokDeployment API (`spec.model.dimensions`, camelCase
there) validate this same dataclass through pydantic, and `ModelConfig` extends it with the
multipliers and constants of the architecture.

Data flow: `ModelDims` (contract or API) -> `ModelConfig.from_dims()` (or a preset) -> `ModelConfig`
-> `tensor_specs()` (release leaf order, shapes, dtypes) -> loader / planner.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Annotated, Any, Literal

from annotated_types import Ge

if TYPE_CHECKING:
    from grok_worker.contract import ModelSection

Quantization = Literal["int8", "bf16"]

#: Grok-1's special token ids (the release's SentencePiece model): defined here once; the tokenizer,
#: the model's padding, the serving path and the tests all import these.
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
#: The first id that is an ordinary token (every id below it is special).
FIRST_ORDINARY_ID = max(PAD_ID, BOS_ID, EOS_ID, UNK_ID) + 1

#: Bytes per element of the dtypes the model stores on devices.
_BYTES = {"int8": 1, "bfloat16": 2, "float32": 4}

#: A count of tokens, elements, heads or layers: at least one.
Count = Annotated[int, Ge(1)]


def grok_ffn_size(d_model: int) -> int:
    """Grok-1's expert hidden size: int(8·d)·2//3, rounded up to a multiple of 8."""
    size = int(8 * d_model) * 2 // 3
    return (size + 7) // 8 * 8


@dataclass(frozen=True)
class DimsProblem:
    """One structural rule a model's dimensions break: the `ModelDims` field and the fix."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidDimsError(ValueError):
    """Dimensions no model can have; `problems` name each field (callers map them to their own
    spelling, e.g. the operator's `spec.model.dimensions.nKvHeads`)."""

    def __init__(self, subject: str, problems: Sequence[DimsProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__(f"{subject}: " + "; ".join(map(str, self.problems)))


@dataclass(frozen=True, kw_only=True)
class ModelDims:
    """Explicit dimensions of a model of the Grok-1 architecture, for models that are not a preset. All sizes count elements."""

    vocab_size: Count
    """Number of tokens in the vocabulary."""
    d_model: Count
    """Width of the residual stream."""
    n_layers: Count
    """Number of transformer layers, each with attention and a mixture of experts."""
    n_q_heads: Count
    """Number of query heads; must be divisible by the mesh's model axis."""
    n_kv_heads: Count
    """Number of key/value heads; must divide the number of query heads."""
    head_dim: Count
    """Size of one attention head; even (the rotary embedding rotates pairs)."""
    n_experts: Count
    """Number of experts per layer; must be divisible by the mesh's expert axis."""
    experts_per_token: Count
    """Experts each token is routed to; at most the number of experts."""
    ffn_size: Count
    """Hidden size of one expert's feed-forward network."""
    max_seq_len: Annotated[int, Ge(2)]
    """Longest sequence (prompt + completion) the model supports."""

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise InvalidDimsError(self.subject, problems)

    @property
    def subject(self) -> str:
        """What an error names as the owner of the dimensions."""
        return "model dimensions"

    def problems(self) -> list[DimsProblem]:
        """Every structural rule these dimensions break (the one definition of the rules)."""
        too_small = [
            DimsProblem(name, f"must be at least {least}, got {getattr(self, name)}")
            for name, least in DIMENSION_MINIMUMS.items()
            if getattr(self, name) < least
        ]
        if too_small:
            return too_small  # the rules below divide by these
        problems = []
        if self.n_q_heads % self.n_kv_heads:
            problems.append(
                DimsProblem(
                    "n_kv_heads",
                    f"{self.n_kv_heads} key/value heads do not divide the {self.n_q_heads} query heads "
                    "(grouped-query attention gives each key/value head a whole group of query heads); "
                    f"use one of {divisors(self.n_q_heads)}",
                )
            )
        if self.experts_per_token > self.n_experts:
            problems.append(
                DimsProblem(
                    "experts_per_token",
                    f"{self.experts_per_token} exceeds the {self.n_experts} experts of a layer; "
                    f"use at most {self.n_experts}",
                )
            )
        if self.head_dim % 2:
            problems.append(
                DimsProblem(
                    "head_dim",
                    f"{self.head_dim} is odd, but the rotary embedding rotates pairs of elements; "
                    f"use an even size such as {self.head_dim + 1}",
                )
            )
        return problems


def divisors(n: int) -> str:
    """The divisors of `n`, for messages that offer the valid choices ("1, 2, 4, 8")."""
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def _least(annotation: Any) -> int:
    """The bound of the `Ge` marker on an `Annotated[int, Ge(n)]` field."""
    bounds = [m.ge for m in annotation.__metadata__ if isinstance(m, Ge) and isinstance(m.ge, int)]
    return bounds[0]


def _minimums() -> dict[str, int]:
    """Field -> least value, read from the `Ge` markers (which pydantic also turns into the API's
    `minimum`), so the bound is written once."""
    hints = typing.get_type_hints(ModelDims, include_extras=True)
    return {f.name: _least(hints[f.name]) for f in fields(ModelDims)}


#: The dimension names, in declaration order, and the least value of each.
DIMENSION_MINIMUMS: dict[str, int] = _minimums()
DIMENSION_NAMES: tuple[str, ...] = tuple(DIMENSION_MINIMUMS)


def dims_of(dims: ModelDims) -> dict[str, Any]:
    """The ten dimensions as keyword arguments (of a `ModelDims` or a `ModelConfig`)."""
    return {name: getattr(dims, name) for name in DIMENSION_NAMES}


@dataclass(frozen=True, kw_only=True)
class ModelConfig(ModelDims):
    """A model of the Grok-1 architecture: its dimensions (`ModelDims`) and the multipliers and
    constants of the architecture. See GROK1.md for each fact."""

    name: str
    #: Multiplies the embedding rows after the lookup (Grok-1: √d_model).
    embedding_multiplier: float
    #: Multiplies the logits after the tied unembedding (Grok-1: 1/√3).
    output_multiplier: float = 0.5773502691896257
    #: Multiplies q·kᵀ (Grok-1: 1/√head_dim); there is no other 1/√d scaling. 0.0: derive it.
    attn_logit_multiplier: float = 0.0
    #: Attention logits are soft-capped to ±this value with tanh, in float32.
    attn_soft_cap: float = 30.0
    norm_eps: float = 1e-5
    rope_base: float = 10000.0
    #: Scale groups along the input axis of the int8 attention output (Wo) and expert down weights.
    wide_input_scale_groups: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.attn_logit_multiplier == 0.0:
            object.__setattr__(self, "attn_logit_multiplier", 1.0 / math.sqrt(self.head_dim))

    @classmethod
    def from_dims(cls, name: str, dims: ModelDims) -> ModelConfig:
        """A model with these dimensions and Grok-1's multipliers derived from them (√d, 1/√3,
        1/√head_dim)."""
        return cls(name=name, **dims_of(dims), embedding_multiplier=math.sqrt(dims.d_model))

    @property
    def dims(self) -> ModelDims:
        """Just the dimensions (what the contract and the API carry)."""
        return ModelDims(**dims_of(self))

    @property
    def subject(self) -> str:
        return f"model config {self.name!r}"

    def problems(self) -> list[DimsProblem]:
        """The structural rules of `ModelDims`, and the int8 checkpoint layout's."""
        problems = super().problems()
        if problems:
            return problems
        g = self.wide_input_scale_groups
        if self.q_size % g:
            problems.append(
                DimsProblem(
                    "head_dim",
                    f"the query width (query heads × head size = {self.q_size}) must be a multiple of the "
                    f"{g} int8 scale groups of the attention output; change the query heads or the head size",
                )
            )
        if self.ffn_size % g:
            problems.append(
                DimsProblem(
                    "ffn_size",
                    f"{self.ffn_size} must be a multiple of the {g} int8 scale groups of the expert "
                    f"down-projection; use e.g. {self.ffn_size + g - self.ffn_size % g}",
                )
            )
        return problems

    # ---- derived sizes -------------------------------------------------------------------------
    @property
    def q_size(self) -> int:
        """Width of the concatenated query heads (the input of Wo)."""
        return self.n_q_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def q_per_kv(self) -> int:
        """Query heads sharing one KV head (GQA group size)."""
        return self.n_q_heads // self.n_kv_heads

    def tensor_specs(self, quantization: Quantization = "int8") -> list[TensorSpec]:
        """Every leaf of the release checkpoint, in release file order (see `release_leaf_names`)."""
        return _tensor_specs(self, quantization)

    def param_bytes(self, quantization: Quantization = "int8") -> int:
        """Bytes of all weights as the worker holds them on devices (embedding in bf16)."""
        return sum(s.device_bytes for s in self.tensor_specs(quantization))

    def active_param_bytes(self, quantization: Quantization = "int8") -> int:
        """Weight bytes one decode step must read per token: everything but the unselected experts."""
        total = 0
        for s in self.tensor_specs(quantization):
            if s.key in _EXPERT_KEYS:
                total += s.device_bytes * self.experts_per_token // self.n_experts
            else:
                total += s.device_bytes
        return total

    @property
    def kv_bytes_per_token(self) -> int:
        """KV-cache bytes per token of context: layers × (K and V) × kv heads × head dim × bf16."""
        return self.n_layers * 2 * self.kv_size * _BYTES["bfloat16"]

    def with_overrides(self, **changes: int | float | str) -> ModelConfig:
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class TensorSpec:
    """One checkpoint leaf: its release path, its key in the params tree, shapes and storage."""

    #: Index of the leaf in the release file order (`tensor{index:05d}_000`).
    index: int
    #: Release module path, e.g. "transformer/decoder_layer_10/moe/linear".
    path: str
    #: None for the embedding and the final norm, else the layer number.
    layer: int | None
    #: Key in the params tree ("embed", "final_norm", or a per-layer key such as "w_gate").
    key: str
    shape: tuple[int, ...]
    #: Stored as QuantizedWeight8bit (int8 weight + bf16 scales) rather than a float32 array.
    quantized: bool
    #: Shape of the bf16 scales of a quantized leaf ([..., G, N]); () otherwise.
    scales_shape: tuple[int, ...] = ()
    #: dtype on device: "int8" (with bf16 scales), "bfloat16" or "float32".
    device_dtype: str = "float32"

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def device_bytes(self) -> int:
        return self.size * _BYTES[self.device_dtype] + math.prod(self.scales_shape) * _BYTES["bfloat16"]


#: Per-layer keys of the params tree, with their release sub-path, in the release's sorted order.
LAYER_KEYS: tuple[tuple[str, str], ...] = (
    ("w_gate", "moe/linear"),
    ("w_down", "moe/linear_1"),
    ("w_value", "moe/linear_v"),
    ("wk", "multi_head_attention/key"),
    ("wo", "multi_head_attention/linear"),
    ("wq", "multi_head_attention/query"),
    ("wv", "multi_head_attention/value"),
    ("attn_norm", "rms_norm"),
    ("attn_out_norm", "rms_norm_1"),
    ("moe_norm", "rms_norm_2"),
    ("moe_out_norm", "rms_norm_3"),
    ("router", "router"),
)
_EXPERT_KEYS = frozenset({"w_gate", "w_down", "w_value"})
_MATRIX_KEYS = frozenset({"w_gate", "w_down", "w_value", "wq", "wk", "wv", "wo"})


def release_layer_order(n_layers: int) -> list[int]:
    """Layers in the release's file order: sorted by key, so 0, 1, 10, 11, …, 19, 2, 20, …"""
    return sorted(range(n_layers), key=lambda i: f"decoder_layer_{i}")


def _layer_shapes(cfg: ModelConfig) -> dict[str, tuple[tuple[int, ...], int]]:
    """key -> (weight shape, scale groups along the input axis) for one layer."""
    e, d, f, g = cfg.n_experts, cfg.d_model, cfg.ffn_size, cfg.wide_input_scale_groups
    return {
        "w_gate": ((e, d, f), 1),
        "w_down": ((e, f, d), g),
        "w_value": ((e, d, f), 1),
        "wk": ((d, cfg.kv_size), 1),
        "wo": ((cfg.q_size, d), g),
        "wq": ((d, cfg.q_size), 1),
        "wv": ((d, cfg.kv_size), 1),
        "attn_norm": ((d,), 0),
        "attn_out_norm": ((d,), 0),
        "moe_norm": ((d,), 0),
        "moe_out_norm": ((d,), 0),
        "router": ((d, cfg.n_experts), 0),
    }


def _tensor_specs(cfg: ModelConfig, quantization: Quantization) -> list[TensorSpec]:
    if quantization not in ("int8", "bf16"):
        raise ValueError(f"quantization must be 'int8' or 'bf16', got {quantization!r}")
    specs = [
        TensorSpec(
            0,
            "language_model/in_out_embed",
            None,
            "embed",
            (cfg.vocab_size, cfg.d_model),
            False,
            (),
            "bfloat16",
        ),
        TensorSpec(1, "language_model/rms_norm", None, "final_norm", (cfg.d_model,), False, (), "float32"),
    ]
    shapes = _layer_shapes(cfg)
    for layer in release_layer_order(cfg.n_layers):
        for key, sub in LAYER_KEYS:
            shape, groups = shapes[key]
            path = f"transformer/decoder_layer_{layer}/{sub}"
            index = len(specs)
            if key in _MATRIX_KEYS and quantization == "int8":
                scales = (*shape[:-2], groups, shape[-1])
                specs.append(TensorSpec(index, path, layer, key, shape, True, scales, "int8"))
            elif key in _MATRIX_KEYS:
                specs.append(TensorSpec(index, path, layer, key, shape, False, (), "bfloat16"))
            else:
                specs.append(TensorSpec(index, path, layer, key, shape, False, (), "float32"))
    return specs


#: Grok-1's expert counts and sequence length: what `grok_architecture` assumes unless told.
_GROK_DEFAULTS = {"n_experts": 8, "experts_per_token": 2, "max_seq_len": 8192}


def grok_architecture(name: str, **dims: int) -> ModelConfig:
    """A config of Grok-1's architecture from `ModelDims` keywords; n_experts, experts_per_token and
    max_seq_len default to Grok-1's and ffn_size to `grok_ffn_size(d_model)`."""
    sizes = {**_GROK_DEFAULTS, "ffn_size": grok_ffn_size(dims["d_model"]), **dims}
    return ModelConfig.from_dims(name, ModelDims(**sizes))


PRESETS: dict[str, ModelConfig] = {
    "grok-1": grok_architecture(
        "grok-1",
        vocab_size=131072,
        d_model=6144,
        n_layers=64,
        n_q_heads=48,
        n_kv_heads=8,
        head_dim=128,
        max_seq_len=8192,
    ),
    "small": grok_architecture(
        "small",
        vocab_size=32768,
        d_model=1024,
        n_layers=8,
        n_q_heads=8,
        n_kv_heads=2,
        head_dim=128,
        max_seq_len=2048,
    ),
    "tiny": grok_architecture(
        "tiny",
        vocab_size=512,
        d_model=64,
        n_layers=3,
        n_q_heads=4,
        n_kv_heads=2,
        head_dim=16,
        max_seq_len=256,
    ),
}


def get_preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}") from None


def config_from_contract(section: ModelSection) -> ModelConfig:
    """The model a worker config asks for: explicit `dims` win over `preset`."""
    if section.dims is not None:
        return ModelConfig.from_dims(section.preset or "custom", section.dims)
    if not section.preset:
        raise ValueError("model: set either `preset` (e.g. 'grok-1') or `dims`")
    return get_preset(section.preset)
