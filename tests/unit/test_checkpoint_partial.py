"""Per-host partial reads: each process of a group reads exactly its devices' share of every file.

Two processes joined by jax.distributed on loopback (gloo, 4 CPU devices each) form one 8-device
mesh `expert=2,model=4`: the expert axis crosses processes, the model axis stays inside each. Each
process loads the tiny checkpoint and reports (this file's `__main__`):
- the loader's bytes read and bytes to read (`LoadStats`), against the sharding plan's
  `shard_plan.host_read_bytes` (what the startup-probe budget uses) and this test's own count of
  "bytes this host must read": per array of every file, the bytes of the union of the index boxes of
  the process's devices (`sharding.addressable_devices_indices_map(shape)`), counted by marking a
  boolean mask, scales included;
- that every local shard equals the same slice of a full single-device read, bit for bit, in int8
  and in bf16 mode (dequantised slice by slice).
About 25 s (two JAX processes start, compile nothing, load the tiny model three times).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = [pytest.mark.multiprocess, pytest.mark.slow]
MESH = "data=1,expert=2,model=4"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_each_process_reads_exactly_its_devices_share(tmp_path: Path) -> None:
    from grok_worker.cli import main

    assert main(["make-checkpoint", "--preset", "tiny", "--seed", "2", str(tmp_path / "ckpt")]) == 0
    port, procs = _free_port(), []
    for pid in range(2):
        env = dict(
            os.environ,
            XLA_FLAGS="--xla_force_host_platform_device_count=4",
            JAX_PLATFORMS="cpu",
            GROK_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
            GROK_NUM_PROCESSES="2",
            GROK_PROCESS_ID=str(pid),
            GROK_MESH=MESH,
        )
        out = tmp_path / f"report{pid}.json"
        procs.append(
            (subprocess.Popen([sys.executable, __file__, str(tmp_path / "ckpt"), str(out)], env=env), out)
        )
    for proc, _ in procs:
        assert proc.wait(timeout=300) == 0
    reports = [json.loads(out.read_text()) for _, out in procs]
    for r in reports:
        assert r["bytes_read"] == r["bytes_to_read"] == r["must_read"] == r["plan_host_read"]
        assert r["bf16_bytes_read"] == r["bf16_bytes_to_read"] == r["plan_host_read"]
        assert r["progress_last"] == [r["must_read"], r["must_read"]]
        # the share is a real part: half the experts, all of the replicated tensors
        assert r["must_read"] < r["all_tensor_bytes"]
        assert r["must_read"] > r["all_tensor_bytes"] // 2
        assert r["mismatches"] == []
        assert r["shards_checked"] > 100
    assert reports[0]["must_read"] == reports[1]["must_read"]


def _must_read(cfg: Any, mesh: Any, directory: Path) -> tuple[int, int]:
    """This process's share by the definition (mask union of its devices' boxes), and all bytes."""
    from grok_worker.checkpoint.pickle_index import index_leaf
    from grok_worker.checkpoint.release_format import leaf_file_name
    from grok_worker.model.sharding import spec_shardings

    shardings = spec_shardings(cfg, "int8", mesh)
    share = total = 0
    for spec in cfg.tensor_specs("int8"):
        index, _ = index_leaf(directory / "ckpt-0" / leaf_file_name(spec.index))
        for ref, sharding in zip(index.arrays(), shardings[spec.index], strict=False):
            mask = np.zeros(ref.shape, bool)
            for box in sharding.addressable_devices_indices_map(ref.shape).values():
                mask[box] = True
            share += int(mask.sum()) * ref.dtype.itemsize
            total += ref.nbytes
    return share, total


def _compare(sharded: Any, full: Any) -> tuple[int, list[str]]:
    import jax

    checked, bad = 0, []
    flat_s, _ = jax.tree_util.tree_flatten_with_path(sharded)
    for (path, a), b in zip(flat_s, jax.tree.leaves(full), strict=True):
        ref = np.asarray(b)
        for shard in a.addressable_shards:
            checked += 1
            if np.asarray(shard.data).tobytes() != ref[shard.index].tobytes():
                bad.append(f"{jax.tree_util.keystr(path)} {shard.index}")
    return checked, bad


def _child(directory: Path, out: Path) -> None:
    import jax

    from grok_worker.checkpoint import load_checkpoint
    from grok_worker.checkpoint.loader import load_checkpoint_with_stats
    from grok_worker.contract import GroupEnv
    from grok_worker.distributed import initialize_from_env
    from grok_worker.model import PRESETS
    from grok_worker.model.sharding import make_mesh
    from grok_worker.shard_plan import host_read_bytes

    group = GroupEnv.from_environ()
    assert initialize_from_env(group)
    assert group.mesh is not None
    assert (jax.device_count(), jax.local_device_count()) == (8, 4)
    cfg = PRESETS["tiny"]
    mesh = make_mesh(group.mesh, cfg=cfg)  # as the engine builds it
    seen: list[tuple[int, int]] = []
    params, stats = load_checkpoint_with_stats(directory, cfg, mesh, lambda d, t: seen.append((d, t)))
    checked, bad = _compare(params, load_checkpoint(directory, cfg))
    bf16, bf16_stats = load_checkpoint_with_stats(directory, cfg, mesh, quantization="bf16")
    checked_bf, bad_bf = _compare(bf16, load_checkpoint(directory, cfg, quantization="bf16"))
    must, total = _must_read(cfg, mesh, directory)
    report = {
        "bytes_read": stats.bytes_read,
        "bytes_to_read": stats.bytes_to_read,
        "must_read": must,
        "all_tensor_bytes": total,
        "progress_last": list(seen[-1]),
        "plan_host_read": host_read_bytes(cfg, group.mesh, 2, jax.process_index()),
        "bf16_bytes_read": bf16_stats.bytes_read,
        "bf16_bytes_to_read": bf16_stats.bytes_to_read,
        "shards_checked": checked + checked_bf,
        "mismatches": bad + bad_bf,
    }
    out.write_text(json.dumps(report))


if __name__ == "__main__":  # one process of the group
    _child(Path(sys.argv[1]), Path(sys.argv[2]))
