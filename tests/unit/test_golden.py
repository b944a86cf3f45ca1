"""The golden test: our loader + forward pass reproduce the release code's own logits.

tests/data/release-12L (copied from the shared golden set; see its README) holds a 12-layer
release-format checkpoint and the logits the release's JAX code computed for three sequences.
We check every position, on 1 device and on a 4-device mesh (a subprocess with 4 host devices).

Tolerance: bfloat16 level per position. With random weights the router's top-2 choice is often a
near-tie, so a bf16-sized difference upstream can flip which expert is 2nd at one layer for one
position (the README warns of such tie-level differences). A position that misses the tolerance
is accepted only if flipping the 2nd/3rd expert of that one position at one layer reproduces the
release's logits to the same tolerance, and such positions must stay rare. A wrong formula
(SiLU, renormalised gates, wrong RoPE...) breaks many positions and cannot be explained that way.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from grok_worker.model_config import ModelConfig

DATA = Path(__file__).resolve().parents[1] / "data" / "release-12L"
N_SEQS = 3
#: Per position: max |ours - release| <= REL_MAX * max|release| and mean <= MEAN_ABS.
REL_MAX = 0.015
MEAN_ABS = 0.1
#: At most this fraction of all positions may need a single-flip explanation.
MAX_FLIP_FRACTION = 0.2


def golden_config() -> ModelConfig:
    from grok_worker.model_config import grok_architecture

    c = json.loads((DATA / "config.json").read_text())
    return grok_architecture(
        "release-12L",
        vocab_size=c["vocab"],
        d_model=c["d_model"],
        n_layers=c["layers"],
        n_q_heads=c["q_heads"],
        n_kv_heads=c["kv_heads"],
        head_dim=c["head_dim"],
        max_seq_len=c["seq_len"],
    )


def _load_sequences() -> tuple[np.ndarray, list[int]]:
    """All three sequences right-padded with token 0 into one batch [3, T_max] (one compile)."""
    seqs = [np.load(DATA / f"tokens{i}.npy")[0] for i in range(N_SEQS)]
    t_max = max(len(s) for s in seqs)
    batch = np.zeros((N_SEQS, t_max), np.int32)
    for i, s in enumerate(seqs):
        batch[i, : len(s)] = s
    return batch, [len(s) for s in seqs]


@functools.cache
def _params(mesh_spec: str | None = None):  # type: ignore[no-untyped-def]
    from grok_worker.checkpoint import load_checkpoint
    from grok_worker.contract import MeshSpec
    from grok_worker.model.sharding import make_mesh

    mesh = make_mesh(MeshSpec.from_env(mesh_spec)) if mesh_spec else None
    return load_checkpoint(DATA, golden_config(), mesh=mesh), mesh


def our_logits(mesh_spec: str | None = None) -> list[np.ndarray]:
    """Our logits [1, T, V] per sequence, computed as one padded batch (padding must not leak)."""
    import jax
    import jax.numpy as jnp

    from grok_worker.model import forward_jit, init_cache
    from grok_worker.model.sharding import replicated, shard_cache

    cfg = golden_config()
    params, mesh = _params(mesh_spec)
    tokens, lengths = _load_sequences()
    b, t = tokens.shape
    positions = np.broadcast_to(np.arange(t, dtype=np.int32), (b, t))
    cache = shard_cache(init_cache(cfg, b, t), cfg, mesh)
    tok, pos = (jax.device_put(jnp.asarray(a), replicated(mesh)) for a in (tokens, positions))
    logits, _ = forward_jit(params, cfg, tok, cache, pos)
    host = np.asarray(jax.device_get(logits))
    return [host[i : i + 1, :n] for i, n in enumerate(lengths)]


def _position_ok(ours: np.ndarray, ref: np.ndarray) -> bool:
    err = np.abs(ours - ref)
    return bool(err.max() <= REL_MAX * np.abs(ref).max() and err.mean() <= MEAN_ABS)


@functools.cache
def _flipped_forward():  # type: ignore[no-untyped-def]
    """A jitted forward(flip_layer, flip_row, flip_pos) over the padded batch that swaps the 2nd and
    3rd expert of one token at one layer (test-only routing override, compiled once)."""
    import jax
    import jax.numpy as jnp

    import grok_worker.model.moe as moe_module
    from grok_worker.model import forward, init_cache

    cfg = golden_config()
    params, _ = _params(None)
    tokens_np, _ = _load_sequences()
    tokens = jnp.asarray(tokens_np)
    b, t = tokens.shape
    original_route = moe_module.route

    def run(flip_layer: jax.Array, flip_token: jax.Array) -> jax.Array:
        layer_counter = iter(range(cfg.n_layers))

        def flipped_route(x, router, mask, k):  # type: ignore[no-untyped-def]
            layer = next(layer_counter)
            probs = jax.nn.softmax(jnp.dot(x.astype(jnp.float32), router.astype(jnp.float32)), -1)
            gates, experts = jax.lax.top_k(probs * mask[:, None], k + 1)
            swap = (jnp.arange(x.shape[0]) == flip_token) & (flip_layer == layer)
            second_g = jnp.where(swap, gates[:, k], gates[:, k - 1])
            second_e = jnp.where(swap, experts[:, k], experts[:, k - 1])
            gates = gates[:, :k].at[:, k - 1].set(second_g)
            experts = experts[:, :k].at[:, k - 1].set(second_e)
            return gates, experts.astype(jnp.int32)

        moe_module.route = flipped_route
        try:
            positions = jnp.broadcast_to(jnp.arange(t), (b, t))
            logits, _ = forward(params, cfg, tokens, init_cache(cfg, b, t), positions)
        finally:
            moe_module.route = original_route
        return logits.reshape(b * t, -1)[flip_token]

    return jax.jit(run), t


def _explained_by_one_flip(seq: int, pos: int, ref: np.ndarray) -> bool:
    """Does swapping the 2nd and 3rd expert of (seq, pos) at some single layer match `ref`?"""
    import jax.numpy as jnp

    run, t = _flipped_forward()
    token = jnp.int32(seq * t + pos)
    return any(
        _position_ok(np.asarray(run(jnp.int32(layer), token)), ref)
        for layer in range(golden_config().n_layers)
    )


def check_against_release(all_logits: list[np.ndarray]) -> None:
    flipped, total = [], 0
    for seq, ours in enumerate(all_logits):
        ref = np.load(DATA / f"logits{seq}.npy")
        assert ours.shape == ref.shape
        for pos in range(ref.shape[1]):
            total += 1
            if _position_ok(ours[0, pos], ref[0, pos]):
                continue
            err = np.abs(ours[0, pos] - ref[0, pos])
            assert _explained_by_one_flip(seq, pos, ref[0, pos]), (
                f"sequence {seq} position {pos}: logits differ from the release by up to {err.max():.3f} "
                f"(mean {err.mean():.3f}), and no single near-tie expert flip explains it"
            )
            flipped.append((seq, pos))
        # The argmax (greedy token) must agree almost everywhere.
        assert (ours.argmax(-1) == ref.argmax(-1)).mean() >= 0.9
    assert len(flipped) <= MAX_FLIP_FRACTION * total, f"too many positions need an expert flip: {flipped}"


@pytest.mark.slow
def test_golden_release_logits_one_device() -> None:
    check_against_release(our_logits())


@pytest.mark.slow
def test_golden_release_logits_on_a_4_device_mesh(tmp_path: Path) -> None:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    # Expert parallelism (experts over 2 devices) and tensor parallelism (heads/FFN over 2) at once.
    mesh = "data=1,expert=2,model=2"
    out = tmp_path / "logits.npz"
    subprocess.run([sys.executable, __file__, mesh, str(out)], env=env, check=True, timeout=300)
    with np.load(out) as f:
        check_against_release([f[f"seq{i}"] for i in range(N_SEQS)])


if __name__ == "__main__":  # subprocess entry: compute logits on a mesh and save them
    import jax

    assert jax.device_count() == 4, jax.devices()
    logits = our_logits(sys.argv[1])
    np.savez(sys.argv[2], seq0=logits[0], seq1=logits[1], seq2=logits[2])
