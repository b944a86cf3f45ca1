"""Kill the API server of a running devcluster and start it again: an outage for fault tests.

Data flow: the cluster's recorded kube-apiserver process → its command line (from /proc, so it is
restarted exactly as it was started) → SIGKILL → `down_seconds` with no API server → the same
command spawned again, logging to the same file → wait for /readyz → the cluster's state (its
process record and state file) names the new process, so `down` and teardown stop it.
"""

from __future__ import annotations

import time
from pathlib import Path

from grok_devcluster.cluster import ClusterError, DevCluster
from grok_devcluster.process import ProcessRecord, is_running, spawn, stop_together
from grok_devcluster.state import save_state

APISERVER = "kube-apiserver"


def restart_apiserver(
    cluster: DevCluster, down_seconds: float = 20.0, *, die_with_parent: bool = False, timeout_s: float = 90.0
) -> float:
    """Kill kube-apiserver, keep it down `down_seconds`, start it again; seconds until it was ready."""
    old = next((p for p in cluster.state.processes if p.name == APISERVER), None)
    if old is None or not is_running(old):
        raise ClusterError(f"cluster {cluster.state.name!r} has no running {APISERVER}")
    argv = [part.decode() for part in Path(f"/proc/{old.pid}/cmdline").read_bytes().split(b"\0") if part]
    stop_together([(old, cluster.popens.get(APISERVER))], grace_s=0.0)  # SIGKILL at once: a crash
    time.sleep(down_seconds)
    started = time.monotonic()
    popen, new = spawn(APISERVER, argv, Path(old.log), die_with_parent=die_with_parent)
    cluster.popens[APISERVER] = popen
    cluster.state.processes[:] = [new if p is old else p for p in cluster.state.processes]
    save_state(cluster.state)
    _wait_ready(cluster, new, timeout_s)
    return time.monotonic() - started


def _wait_ready(cluster: DevCluster, process: ProcessRecord, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_running(process):
            raise ClusterError(f"{APISERVER} exited on restart; see {process.log}")
        if cluster.handle.kubectl("get", "--raw", "/readyz", check=False, timeout=10).returncode == 0:
            return
        time.sleep(0.5)
    raise ClusterError(f"{APISERVER} not ready {timeout_s:.0f}s after its restart; see {process.log}")
