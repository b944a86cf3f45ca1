"""Sharding: the rule table, and the tiny model giving the same logits on 1 and 4 devices (also
with two groups of rows in one `forward_groups` pass, as the fused decode + chunk step runs).

Multi-device runs happen in a subprocess started with 4 host CPU devices (XLA_FLAGS), running this
file's `__main__` block, so the rest of the test session keeps its single device.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from grok_worker.contract import MeshSpec
from grok_worker.model import PRESETS, Rows, forward_groups, forward_jit, init_cache, init_params
from grok_worker.model.sharding import make_mesh, partition_spec, replicated, shard_cache, shard_params
from grok_worker.shard_plan import layout

CFG = PRESETS["tiny"]
TOKENS = np.array([[1, 17, 99, 250, 3, 0, 0, 0], [1, 400, 12, 7, 7, 7, 81, 5]], np.int32)


#: A second group of rows for the fused pass: batch 1 (replicated where the data axis splits TOKENS).
CHUNK = np.array([[1, 33, 44, 55]], np.int32)
#: Meshes the fused pass is checked on: experts split over devices, and the batch split over "data".
FUSED_MESHES = ("expert=2,model=2", "data=2,model=2")


def tiny_logits(mesh_env: str | None, fused: bool = True) -> dict[str, np.ndarray]:
    """Logits of TOKENS alone ("alone"); with `fused` also of CHUNK alone ("chunk") and of both in
    one `forward_groups` pass ("fused", "fused_chunk"), on the mesh."""
    mesh = make_mesh(MeshSpec.from_env(mesh_env), cfg=CFG) if mesh_env else None
    params = shard_params(init_params(CFG, jax.random.key(0)), CFG, "int8", mesh)

    def rows(tokens: np.ndarray, max_len: int) -> Rows:
        b, t = tokens.shape
        pos = jnp.broadcast_to(jnp.arange(t), (b, t))
        tok, pos = (jax.device_put(a, replicated(mesh)) for a in (jnp.asarray(tokens), pos))
        return Rows(tok, shard_cache(init_cache(CFG, b, max_len), CFG, mesh), pos)

    out = {}
    for name, group in (("alone", rows(TOKENS, 8)), ("chunk", rows(CHUNK, 6))):
        logits, _ = forward_jit(params, CFG, group.tokens, group.cache, group.positions)
        out[name] = np.asarray(jax.device_get(logits))
        if not fused:
            return out
    both = jax.jit(forward_groups, static_argnums=1)(params, CFG, (rows(TOKENS, 8), rows(CHUNK, 6)))
    out["fused"], out["fused_chunk"] = (np.asarray(jax.device_get(logits)) for logits, _ in both)
    return out


def test_rule_table_shards_only_dimensions_the_mesh_divides() -> None:
    lay = layout(CFG, MeshSpec())
    assert partition_spec(lay, ("expert", "embed", "ffn"), (8, 64, 344)) == PartitionSpec(None, None, None)
    with pytest.raises(ValueError, match="needs 4 devices"):
        make_mesh(MeshSpec(model=4), jax.devices()[:1])


@pytest.mark.slow
def test_tiny_model_gives_the_same_logits_on_1_and_4_devices(tmp_path: Path) -> None:
    ref = tiny_logits(None, fused=False)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    meshes = ["model=4", "expert=2,model=2", "data=2,model=2"]
    out = tmp_path / "logits.npz"
    subprocess.run([sys.executable, __file__, str(out), *meshes], env=env, check=True, timeout=600)
    real = TOKENS != 0
    with np.load(out) as got:
        for mesh in meshes:
            alone = got[f"{mesh}:alone"]
            np.testing.assert_allclose(
                alone[real], ref["alone"][real], atol=0.03 * np.abs(ref["alone"]).max(), err_msg=mesh
            )
        # One pass over two groups of rows (the batch-2 one split over "data" where the batch-1 one is
        # replicated) gives each group what its own pass gives it.
        for mesh in FUSED_MESHES:
            for fused, apart in (("fused", "alone"), ("fused_chunk", "chunk")):
                np.testing.assert_allclose(
                    got[f"{mesh}:{fused}"], got[f"{mesh}:{apart}"], rtol=1e-5, atol=1e-5, err_msg=mesh
                )


if __name__ == "__main__":  # subprocess entry: logits of each mesh given, into one .npz
    assert jax.device_count() == 4
    results = {}
    for mesh_env in sys.argv[2:]:
        mesh = make_mesh(MeshSpec.from_env(mesh_env), cfg=CFG)
        # The rule table must actually shard the expert weights on these meshes.
        lay = layout(CFG, MeshSpec.from_env(mesh_env))
        assert partition_spec(lay, ("expert", "embed", "ffn"), (8, 64, CFG.ffn_size)) != PartitionSpec(
            None, None, None
        )
        for name, logits in tiny_logits(mesh_env, fused=mesh_env in FUSED_MESHES).items():
            results[f"{mesh_env}:{name}"] = logits
    np.savez(sys.argv[1], **results)


def test_a_single_process_group_skips_jax_distributed_and_a_group_needs_a_coordinator() -> None:
    from grok_worker.contract import GroupEnv
    from grok_worker.distributed import initialize_from_env

    assert initialize_from_env(GroupEnv()) is False
    with pytest.raises(ValueError, match="GROK_COORDINATOR_ADDRESS"):
        initialize_from_env(GroupEnv(num_processes=2, process_id=1))


def test_cache_and_param_shardings_follow_the_rule_table_on_a_one_device_mesh() -> None:
    from grok_worker.model.sharding import cache_shardings, param_shardings

    mesh = make_mesh(MeshSpec(), jax.devices()[:1], cfg=CFG)
    ps = param_shardings(CFG, "int8", mesh)
    assert jax.tree.structure(ps) == jax.tree.structure(init_params(CFG, jax.random.key(0)))
    cs = cache_shardings(CFG, mesh, 2, 8)
    assert cs.k.spec == PartitionSpec(None, None, None, None, None)


def test_rule_table_on_larger_meshes_shards_heads_whole_and_experts_over_expert() -> None:
    # tiny: 4 query heads, 2 kv heads of 16 -> model=4 splits as model_kv=2 x model_q=2: each device
    # one query head and the one KV head it uses.
    tp4 = layout(CFG, MeshSpec(model=4))
    assert (tp4.model_kv, tp4.model_q) == (2, 2)
    assert partition_spec(tp4, ("embed", "q_heads"), (64, 64)) == PartitionSpec(None, ("model_kv", "model_q"))
    assert partition_spec(tp4, ("embed", "kv_heads"), (64, 32)) == PartitionSpec(None, "model_kv")
    ep2tp2 = layout(CFG, MeshSpec(data=2, expert=2, model=2))
    assert partition_spec(ep2tp2, ("expert", "embed", "ffn"), (8, 64, 344)) == PartitionSpec(
        "expert", None, ("model_kv", "model_q")
    )
    kv = partition_spec(ep2tp2, ("layers", "batch", "seq", "kv_heads", "head_dim"), (3, 4, 8, 2, 16))
    assert kv == PartitionSpec(None, "data", None, "model_kv", None)
