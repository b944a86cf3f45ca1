"""Figure 9: bytes each host reads from the checkpoint ÷ that host's share (`python -m bench host_reads`).

Two worker processes joined by jax.distributed on loopback (gloo, 4 fake CPU devices each) form one
8-device mesh `expert=2,model=4`, the default multi-host layout: experts across hosts, the model
axis inside a host. Each process loads a release-format checkpoint (`small` preset, int8, cached
in the work directory) with the project's loader and reports the tensor bytes it actually read
(`LoadStats.bytes_read`, counted at each `preadv`).

Limit, from the sharding plan alone (no JAX): `shard_plan.host_read_bytes` for that host — the
bytes of the union of its devices' slices of every leaf, scales included. Goal: read ÷ share == 1
on every host. The share as a fraction of the checkpoint's file bytes is printed beside it.
Smoke size: the tiny preset.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from bench.options import Options
from bench.report import Figure, Result
from bench.weights import ensure_checkpoint

NAME = "host_reads"
MESH = "data=1,expert=2,model=4"
HOSTS = 2
_REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _host(root: Path, preset: str, out: Path) -> None:
    """One host of the group: load its share and write what it read next to the plan's figure."""
    import jax

    from grok_worker.checkpoint.loader import load_checkpoint_with_stats
    from grok_worker.contract import GroupEnv
    from grok_worker.distributed import initialize_from_env
    from grok_worker.model import get_preset
    from grok_worker.model.sharding import make_mesh
    from grok_worker.shard_plan import host_read_bytes

    group = GroupEnv.from_environ()
    initialize_from_env(group)
    assert group.mesh is not None
    cfg = get_preset(preset)
    _, stats = load_checkpoint_with_stats(root, cfg, make_mesh(group.mesh, cfg=cfg))
    share = host_read_bytes(cfg, group.mesh, HOSTS, jax.process_index())
    report = {"read": stats.bytes_read, "share": share, "files": stats.file_bytes}
    out.write_text(json.dumps(report))


def _run_group(root: Path, preset: str, workdir: Path) -> list[dict[str, int]]:
    port = _free_port()
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    for pid in range(HOSTS):
        out = workdir / f"host_reads{pid}.json"
        env = dict(
            os.environ,
            XLA_FLAGS="--xla_force_host_platform_device_count=4",
            JAX_PLATFORMS="cpu",
            PYTHONPATH=str(_REPO),
            GROK_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
            GROK_NUM_PROCESSES=str(HOSTS),
            GROK_PROCESS_ID=str(pid),
            GROK_MESH=MESH,
        )
        cmd = [sys.executable, "-m", "bench.host_reads", str(root), preset, str(out)]
        procs.append((subprocess.Popen(cmd, env=env), out))
    for proc, _ in procs:
        if proc.wait(timeout=900) != 0:
            raise RuntimeError(f"host process {proc.args!r} exited {proc.returncode}")
    return [json.loads(out.read_text()) for _, out in procs]


def run(options: Options) -> Result:
    preset = "tiny" if options.smoke else "small"
    from grok_worker.model import get_preset

    root = ensure_checkpoint(get_preset(preset), options.workdir, "int8")
    reports = _run_group(root, preset, options.workdir)
    result = Result(NAME)
    for i, r in enumerate(reports):
        result.add(Figure(NAME, f"bytes_read_host{i}_{preset}", r["read"], "B", r["share"], "==1"))
        result.notes.append((f"host {i}", f"share {r['share'] / r['files']:.3f} of the checkpoint's bytes"))
    return result


if __name__ == "__main__":
    _host(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
