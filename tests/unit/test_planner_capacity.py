"""The capacity planner: weights + KV cache + headroom per GPU, against the GPU's memory."""

from __future__ import annotations

import pytest

from grok_operator.capacity import HEADROOM_FIXED_BYTES, plan_memory
from grok_operator.quantity import human_bytes, parse_bytes
from grok_worker.contract import MeshSpec
from grok_worker.model_config import PRESETS

GROK1 = PRESETS["grok-1"]
GIB = 2**30


def plan(mesh: MeshSpec, memory: str, quantization: str = "int8", batch: int = 8, seq: int = 8192):  # type: ignore[no-untyped-def]
    return plan_memory(
        GROK1,
        quantization=quantization,  # type: ignore[arg-type]
        mesh=mesh,
        max_batch=batch,
        max_seq_len=seq,
        device_memory_bytes=parse_bytes(memory),
    )


def _kv_only(batch: int, seq: int, shards: int) -> int:
    """K and V bytes per device when the KV heads split `shards` ways (the mask is counted apart)."""
    return batch * seq * GROK1.kv_bytes_per_token // shards


def _mask(batch: int, seq: int, data: int = 1) -> int:
    """The cache's valid mask (1 byte per slot) and lengths (int32 per row), split over data."""
    return (batch * seq + 4 * batch) // data


def test_grok1_int8_fits_on_eight_80gb_gpus() -> None:
    p = plan(MeshSpec(model=8), "80Gi")
    assert p.fits
    assert p.devices == 8
    # Every weight splits 8 ways except the tiny replicated ones (norms, router, int8 scale groups).
    assert 0 < p.weights_bytes - GROK1.param_bytes("int8") // 8 < 64 * 2**20
    # 8 slots × 8192 tokens × 256 KiB per token, split over the 8 KV heads.
    assert p.kv_cache_bytes == _kv_only(8, 8192, 8) + _mask(8, 8192) == 2 * GIB + _mask(8, 8192)
    assert 30 * GIB < p.weights_bytes < 40 * GIB


def test_grok1_on_two_24gb_gpus_is_refused_with_the_numbers() -> None:
    p = plan(MeshSpec(model=2), "24Gi")
    assert not p.fits
    assert p.required_bytes > p.device_memory_bytes
    text = p.summary()
    assert "each of the 2 GPUs needs" in text
    assert "exceeds its 24.0 GiB" in text
    assert human_bytes(p.weights_bytes) in text
    assert "gpuMemory" in p.advice()


def test_bf16_needs_about_twice_the_weight_memory_of_int8() -> None:
    int8 = plan(MeshSpec(model=8), "80Gi").weights_bytes
    bf16 = plan(MeshSpec(model=8), "80Gi", quantization="bf16").weights_bytes
    assert 1.9 < bf16 / int8 < 2.1
    assert not plan(MeshSpec(model=8), "80Gi", quantization="bf16").fits
    assert plan(MeshSpec(model=16), "80Gi", quantization="bf16").fits


def test_the_data_axis_replicates_weights_and_splits_the_kv_cache() -> None:
    model_only = plan(MeshSpec(model=8), "80Gi")
    with_data = plan(MeshSpec(data=2, model=4), "80Gi")
    assert 1.99 < with_data.weights_bytes / model_only.weights_bytes < 2.01
    # 2 data shards × 4 KV-head shards split K and V as finely as 8 KV-head shards.
    assert with_data.kv_cache_bytes == _kv_only(8, 8192, 8) + _mask(8, 8192, data=2)


def test_a_model_axis_beyond_the_kv_heads_gives_each_device_the_kv_head_its_queries_use() -> None:
    # 16 devices, 8 KV heads: model_kv = 8 × model_q = 2, one KV head per device (not the whole cache).
    assert plan(MeshSpec(model=16), "80Gi").kv_cache_bytes == plan(MeshSpec(model=8), "80Gi").kv_cache_bytes
    assert plan(MeshSpec(model=16), "80Gi").kv_cache_bytes < _kv_only(8, 8192, 4)


@pytest.mark.parametrize(("batch", "seq"), [(8, 8192), (16, 8192), (8, 4096), (64, 8192)])
def test_the_kv_cache_scales_with_batch_times_sequence(batch: int, seq: int) -> None:
    assert plan(MeshSpec(model=8), "80Gi", batch=batch, seq=seq).kv_cache_bytes == _kv_only(
        batch, seq, 8
    ) + _mask(batch, seq)


def test_a_huge_batch_alone_can_make_a_plan_infeasible() -> None:
    assert not plan(MeshSpec(model=8), "80Gi", batch=256).fits


def test_headroom_is_a_fixed_reserve_plus_a_fraction_of_the_device() -> None:
    small, large = plan(MeshSpec(model=8), "24Gi"), plan(MeshSpec(model=8), "80Gi")
    assert HEADROOM_FIXED_BYTES < small.headroom_bytes < large.headroom_bytes


@pytest.mark.parametrize(
    ("text", "expected"),
    [("80Gi", 80 * GIB), ("24G", 24 * 10**9), ("81920Mi", 80 * GIB), ("1.5Gi", 3 * GIB // 2), ("1024", 1024)],
)
def test_quantities(text: str, expected: int) -> None:
    assert parse_bytes(text) == expected


def test_a_bad_quantity_names_the_field_and_the_forms() -> None:
    with pytest.raises(
        ValueError, match=r"topology.gpuMemory: '80 GB' is not a memory quantity; write e.g. 80Gi"
    ):
        parse_bytes("80 GB", field="topology.gpuMemory")
