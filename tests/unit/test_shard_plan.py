"""The sharding plan (no JAX): which device holds which slice, and the per-device and per-host bytes."""

from __future__ import annotations

import math

import pytest

from grok_worker.contract import MeshSpec
from grok_worker.model_config import PRESETS
from grok_worker.shard_plan import (
    cache_shapes,
    device_plan,
    heads_split,
    host_read_bytes,
    index_box,
    layout,
)

GROK1 = PRESETS["grok-1"]


def _file_bytes() -> int:
    """The release files' array bytes: int8 matrices + bf16 scales, float32 for the rest."""
    total = 0
    for s in GROK1.tensor_specs("int8"):
        total += s.size + 2 * math.prod(s.scales_shape) if s.quantized else 4 * s.size
    return total


def test_grok1_on_16_devices_gives_each_device_the_one_kv_head_its_three_query_heads_use() -> None:
    lay = layout(GROK1, MeshSpec(model=16))
    assert (lay.model_kv, lay.model_q) == (8, 2)
    kv = cache_shapes(GROK1, 8, 8192)["k"]
    for m, device in enumerate(lay.devices()):
        q_box = index_box(lay, ("embed", "q_heads"), (GROK1.d_model, GROK1.q_size), device)[1]
        kv_box = index_box(lay, ("layers", "batch", "seq", "kv_heads", "head_dim"), kv, device)[3]
        assert kv_box == (m // 2, m // 2 + 1)
        q_heads = range(q_box[0] // GROK1.head_dim, q_box[1] // GROK1.head_dim)
        assert len(q_heads) == 3
        assert {h // GROK1.q_per_kv for h in q_heads} == {m // 2}


@pytest.mark.parametrize("model", [1, 2, 3, 4, 6, 8, 12, 16, 24, 48])
@pytest.mark.parametrize(("q", "k"), [(48, 8), (16, 8), (8, 2), (4, 4), (12, 1)])
def test_every_device_holds_the_kv_heads_of_its_query_heads(model: int, q: int, k: int) -> None:
    cfg = GROK1.with_overrides(n_q_heads=q, n_kv_heads=k, head_dim=64)
    if cfg.q_size % cfg.wide_input_scale_groups:
        pytest.skip("not a valid config")
    lay = layout(cfg, MeshSpec(model=model))
    kv = cache_shapes(cfg, 1, 4)["k"]
    for device in lay.devices():
        q_box = index_box(lay, ("embed", "q_heads"), (cfg.d_model, cfg.q_size), device)[1]
        kv_box = index_box(lay, ("layers", "batch", "seq", "kv_heads", "head_dim"), kv, device)[3]
        needed = {h // cfg.q_per_kv for h in range(q_box[0] // 64, q_box[1] // 64)}
        assert needed <= set(range(*kv_box))
        # The local grouping (query head j of the device uses local KV head j // (local q / local kv))
        # must be the global one: the per-device attention relies on it.
        local_q, local_kv = q_box[1] // 64 - q_box[0] // 64, kv_box[1] - kv_box[0]
        assert local_q % local_kv == 0
        for j, h in enumerate(range(q_box[0] // 64, q_box[1] // 64)):
            assert kv_box[0] + j // (local_q // local_kv) == h // cfg.q_per_kv
    if heads_split(cfg, model) is None:
        assert lay.split("q_heads") == ()


def test_one_host_reads_the_whole_checkpoint_once_whatever_the_mesh() -> None:
    for mesh in (MeshSpec(), MeshSpec(model=8), MeshSpec(expert=2, model=8), MeshSpec(data=2, model=8)):
        assert host_read_bytes(GROK1, mesh, 1, 0) == _file_bytes()


def test_two_hosts_split_the_experts_and_each_reads_the_shared_rest() -> None:
    mesh = MeshSpec(expert=2, model=8)
    reads = [host_read_bytes(GROK1, mesh, 2, h) for h in range(2)]
    expert_bytes = sum(
        s.size + 2 * math.prod(s.scales_shape) for s in GROK1.tensor_specs("int8") if s.key.startswith("w_")
    )
    shared = _file_bytes() - expert_bytes
    assert reads == [shared + expert_bytes // 2] * 2


def test_a_leaf_replicated_across_hosts_is_read_by_each_but_once_per_host() -> None:
    # data=2 over 2 hosts: each host holds a full copy of the weights and reads it once.
    assert host_read_bytes(GROK1, MeshSpec(data=2, model=8), 2, 1) == _file_bytes()
    # model=16 over 2 hosts (the model axis crossing hosts): each host reads its half of every split leaf.
    assert host_read_bytes(GROK1, MeshSpec(model=16), 2, 0) < 0.51 * _file_bytes()


def test_device_plan_bytes_and_errors() -> None:
    p = device_plan(GROK1, "int8", MeshSpec(expert=2, model=8), batch=8, max_len=8192)
    assert p.kv_cache_bytes == 8 * 8192 * GROK1.kv_bytes_per_token // 8 + 8 * 8192 + 4 * 8
    assert 18.8 * 2**30 < p.weights_bytes < 19 * 2**30
    with pytest.raises(ValueError, match="split evenly over the hosts"):
        host_read_bytes(GROK1, MeshSpec(model=8), 3, 0)
