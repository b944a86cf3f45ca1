"""Dimensions of a Grok-1-architecture model, its presets, and the byte counts derived from them.

This module is the single description of "which tensors a model has, with what shapes": the JAX
model (`grok_worker.model`) allocates from it, the checkpoint reader and writer
(`grok_worker.checkpoint`) check every file against it, and the operator's capacity planner reads
byte counts from it. It is standard library only, so the operator can import it without JAX.

Data flow: `ModelSection` (from the worker config) -> `config_from_contract()` -> `ModelConfig`
-> `tensor_specs()` (release leaf order, shapes, dtypes) -> loader / planner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from grok_worker.contract import ModelSection

Quantization = Literal["int8", "bf16"]

#: Grok-1's special token ids (the release's SentencePiece model): defined here once; the tokenizer,
#: the serving path and `ModelConfig` all use these.
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3

#: Bytes per element of the dtypes the model stores on devices.
_BYTES = {"int8": 1, "bfloat16": 2, "float32": 4}


def grok_ffn_size(d_model: int) -> int:
    """Grok-1's expert hidden size: int(8·d)·2//3, rounded up to a multiple of 8."""
    size = int(8 * d_model) * 2 // 3
    return (size + 7) // 8 * 8


@dataclass(frozen=True)
class ModelConfig:
    """A model of the Grok-1 architecture. Sizes are in elements; see GROK1.md for each fact."""

    name: str
    vocab_size: int
    d_model: int
    n_layers: int
    n_q_heads: int
    n_kv_heads: int
    head_dim: int
    n_experts: int
    experts_per_token: int
    ffn_size: int
    max_seq_len: int
    #: Multiplies the embedding rows after the lookup (Grok-1: √d_model).
    embedding_multiplier: float
    #: Multiplies the logits after the tied unembedding (Grok-1: 1/√3).
    output_multiplier: float = 0.5773502691896257
    #: Multiplies q·kᵀ (Grok-1: 1/√head_dim); there is no other 1/√d scaling.
    attn_logit_multiplier: float = 0.0
    #: Attention logits are soft-capped to ±this value with tanh, in float32.
    attn_soft_cap: float = 30.0
    norm_eps: float = 1e-5
    rope_base: float = 10000.0
    pad_id: int = PAD_ID
    bos_id: int = BOS_ID
    eos_id: int = EOS_ID
    unk_id: int = UNK_ID
    #: Scale groups along the input axis of the int8 attention output (Wo) and expert down weights.
    wide_input_scale_groups: int = 8

    def __post_init__(self) -> None:
        if self.attn_logit_multiplier == 0.0:
            object.__setattr__(self, "attn_logit_multiplier", 1.0 / math.sqrt(self.head_dim))
        problems = []
        for name in (
            "vocab_size",
            "d_model",
            "n_layers",
            "n_q_heads",
            "n_kv_heads",
            "head_dim",
            "n_experts",
            "experts_per_token",
            "ffn_size",
            "max_seq_len",
        ):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        if self.n_kv_heads > 0 and self.n_q_heads % self.n_kv_heads:
            problems.append(
                f"n_q_heads ({self.n_q_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads}) for GQA"
            )
        if self.experts_per_token > self.n_experts:
            problems.append(
                f"experts_per_token ({self.experts_per_token}) must not exceed n_experts ({self.n_experts})"
            )
        if self.head_dim % 2:
            problems.append(f"head_dim ({self.head_dim}) must be even for the half-split RoPE")
        g = self.wide_input_scale_groups
        if self.q_size % g or self.ffn_size % g:
            problems.append(
                f"n_q_heads·head_dim ({self.q_size}) and ffn_size ({self.ffn_size}) must be multiples of "
                f"the int8 scale groups ({g})"
            )
        if problems:
            raise ValueError(f"model config {self.name!r}: " + "; ".join(problems))

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


def grok_architecture(
    name: str,
    *,
    vocab_size: int,
    d_model: int,
    n_layers: int,
    n_q_heads: int,
    n_kv_heads: int,
    head_dim: int,
    n_experts: int = 8,
    experts_per_token: int = 2,
    ffn_size: int | None = None,
    max_seq_len: int = 8192,
) -> ModelConfig:
    """A config with Grok-1's multipliers derived from the dimensions (√d, 1/√3, 1/√head_dim)."""
    return ModelConfig(
        name=name,
        vocab_size=vocab_size,
        d_model=d_model,
        n_layers=n_layers,
        n_q_heads=n_q_heads,
        n_kv_heads=n_kv_heads,
        head_dim=head_dim,
        n_experts=n_experts,
        experts_per_token=experts_per_token,
        ffn_size=grok_ffn_size(d_model) if ffn_size is None else ffn_size,
        max_seq_len=max_seq_len,
        embedding_multiplier=math.sqrt(d_model),
        attn_logit_multiplier=1.0 / math.sqrt(head_dim),
    )


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
        d = section.dims
        return grok_architecture(
            section.preset or "custom",
            vocab_size=d.vocab_size,
            d_model=d.d_model,
            n_layers=d.n_layers,
            n_q_heads=d.n_q_heads,
            n_kv_heads=d.n_kv_heads,
            head_dim=d.head_dim,
            n_experts=d.n_experts,
            experts_per_token=d.experts_per_token,
            ffn_size=d.ffn_size,
            max_seq_len=d.max_seq_len,
        )
    if not section.preset:
        raise ValueError("model: set either `preset` (e.g. 'grok-1') or `dims`")
    return get_preset(section.preset)
