"""Model dimensions, presets, byte counts and the contract mapping (no JAX involved)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from grok_worker.contract import ModelSection
from grok_worker.model_config import (
    PRESETS,
    ModelDims,
    config_from_contract,
    grok_ffn_size,
    release_layer_order,
)


def test_grok1_preset_has_the_release_dimensions_and_multipliers() -> None:
    g = PRESETS["grok-1"]
    assert (g.vocab_size, g.d_model, g.n_layers, g.n_q_heads, g.n_kv_heads, g.head_dim) == (
        131072,
        6144,
        64,
        48,
        8,
        128,
    )
    assert (g.n_experts, g.experts_per_token, g.ffn_size, g.max_seq_len) == (8, 2, 32768, 8192)
    assert g.embedding_multiplier == pytest.approx(78.38367176906169)
    assert g.output_multiplier == pytest.approx(0.5773502691896257)
    assert g.attn_logit_multiplier == pytest.approx(0.08838834764831845)


def test_release_leaf_order_is_lexicographic_by_layer_and_has_770_leaves() -> None:
    specs = PRESETS["grok-1"].tensor_specs("int8")
    assert len(specs) == 770
    assert release_layer_order(12)[:4] == [0, 1, 10, 11]
    assert specs[14].path == "transformer/decoder_layer_1/moe/linear"
    assert specs[26].path == "transformer/decoder_layer_10/moe/linear"
    by_path = {s.path: s for s in specs}
    down = by_path["transformer/decoder_layer_0/moe/linear_1"]
    assert down.shape == (8, 32768, 6144)
    assert down.scales_shape == (8, 8, 6144)
    assert by_path["transformer/decoder_layer_0/multi_head_attention/query"].scales_shape == (1, 6144)
    assert by_path["transformer/decoder_layer_0/multi_head_attention/linear"].scales_shape == (8, 6144)


def test_byte_counts_match_the_published_sizes() -> None:
    g = PRESETS["grok-1"]
    assert 314e9 < g.param_bytes("int8") < 320e9
    assert 80e9 < g.active_param_bytes("int8") < 90e9
    assert g.kv_bytes_per_token == 256 * 1024
    assert g.param_bytes("bf16") > 1.9 * g.param_bytes("int8")


def test_small_and_tiny_presets_follow_the_brief() -> None:
    s, t = PRESETS["small"], PRESETS["tiny"]
    assert (s.d_model, s.n_layers, s.n_q_heads, s.n_kv_heads, s.head_dim, s.vocab_size, s.max_seq_len) == (
        1024,
        8,
        8,
        2,
        128,
        32768,
        2048,
    )
    assert s.ffn_size == grok_ffn_size(1024) == 5464
    assert t.n_experts == 8
    assert t.experts_per_token == 2
    assert t.n_q_heads > t.n_kv_heads


def test_config_from_contract_prefers_dims_and_rejects_bad_ones() -> None:
    assert config_from_contract(ModelSection(preset="tiny")) is PRESETS["tiny"]
    dims = ModelDims(
        vocab_size=256,
        d_model=64,
        n_layers=2,
        n_q_heads=4,
        n_kv_heads=2,
        head_dim=16,
        n_experts=8,
        experts_per_token=2,
        ffn_size=344,
        max_seq_len=64,
    )
    cfg = config_from_contract(ModelSection(preset=None, dims=dims))
    assert cfg.n_layers == 2
    assert cfg.embedding_multiplier == 8.0
    with pytest.raises(ValueError, match="n_kv_heads"):
        config_from_contract(ModelSection(dims={**dataclasses.asdict(dims), "n_kv_heads": 3}))
    with pytest.raises(ValueError, match="unknown model preset"):
        config_from_contract(ModelSection(preset="grok-9"))


def test_model_config_imports_without_jax_or_numpy() -> None:
    code = (
        "import sys, grok_worker.model_config; assert 'jax' not in sys.modules and 'numpy' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
