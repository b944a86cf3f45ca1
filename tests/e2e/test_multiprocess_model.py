"""Two processes joined by jax.distributed on loopback (gloo, 2 CPU devices each) form one
4-device mesh; the tiny model loaded from a release-format checkpoint gives the same logits there
as on one device. Exercises grok_worker.distributed.initialize_from_env with the operator's
environment contract (GROK_COORDINATOR_ADDRESS, GROK_NUM_PROCESSES, GROK_PROCESS_ID)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.multiprocess, pytest.mark.slow]

TOKENS = np.array([[1, 17, 99, 250, 3, 0, 0, 0], [1, 400, 12, 7, 7, 7, 81, 5]], np.int32)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def logits_on(checkpoint: Path, mesh_env: str | None) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    from grok_worker.checkpoint import load_checkpoint
    from grok_worker.contract import MeshSpec
    from grok_worker.model import PRESETS, forward_jit, init_cache
    from grok_worker.model.sharding import make_mesh, replicated, shard_cache

    cfg = PRESETS["tiny"]
    mesh = make_mesh(MeshSpec.from_env(mesh_env), cfg=cfg) if mesh_env else None
    params = load_checkpoint(checkpoint, cfg, mesh=mesh)
    cache = shard_cache(init_cache(cfg, 2, 8), cfg, mesh)
    pos = np.broadcast_to(np.arange(8, dtype=np.int32), (2, 8))
    tok, pos_d = (jax.device_put(jnp.asarray(a), replicated(mesh)) for a in (TOKENS, pos))
    logits, _ = forward_jit(params, cfg, tok, cache, pos_d)
    if mesh is not None:  # gather the (replicated) result to every process
        logits = jax.jit(lambda x: x, out_shardings=replicated(mesh))(logits)
        return np.asarray(logits.addressable_data(0))
    return np.asarray(logits)


def test_two_processes_form_one_4_device_mesh_with_the_same_logits(tmp_path: Path) -> None:
    from grok_worker.cli import main

    assert main(["make-checkpoint", "--preset", "tiny", "--seed", "1", str(tmp_path / "ckpt")]) == 0
    ref = logits_on(tmp_path / "ckpt", None)
    port = _free_port()
    procs = []
    for pid in range(2):
        env = dict(
            os.environ,
            XLA_FLAGS="--xla_force_host_platform_device_count=2",
            JAX_PLATFORMS="cpu",
            GROK_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
            GROK_NUM_PROCESSES="2",
            GROK_PROCESS_ID=str(pid),
            GROK_MESH="data=1,expert=2,model=2",
        )
        out = tmp_path / f"logits{pid}.npy"
        cmd = [sys.executable, __file__, str(tmp_path / "ckpt"), str(out)]
        procs.append((subprocess.Popen(cmd, env=env), out))
    for proc, _ in procs:
        assert proc.wait(timeout=300) == 0
    real = TOKENS != 0
    for _, out in procs:
        got = np.load(out)
        np.testing.assert_allclose(got[real], ref[real], atol=0.03 * np.abs(ref).max())


if __name__ == "__main__":  # one process of the group
    import jax

    from grok_worker.contract import GroupEnv
    from grok_worker.distributed import initialize_from_env

    group = GroupEnv.from_environ()
    assert initialize_from_env(group)
    assert jax.device_count() == 4
    assert jax.local_device_count() == 2
    assert group.mesh is not None
    np.save(sys.argv[2], logits_on(Path(sys.argv[1]), group.mesh.to_env()))
