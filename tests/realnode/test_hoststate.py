"""`HostSnapshot.restore()` undoes each kind of change a real node makes, checked on the machine itself.

The test makes one change of every kind the node's parts make (a network link, an nftables table
and an iptables chain, a sysctl, a host folder, a mount, a cgroup), restores, and requires a
fresh snapshot to equal the recorded one. Needs root (it skips, or fails in CI, without); ~1 s.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from grok_devcluster.hoststate import CGROUP_ROOT, HostSnapshot, _sysctl_path

from .conftest import require_real_node

pytestmark = pytest.mark.realnode


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def test_restore_undoes_links_tables_sysctls_paths_mounts_and_cgroups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_real_node()
    host_path = tmp_path / "created-by-the-node"
    monkeypatch.setattr("grok_devcluster.hoststate.HOST_PATHS", (str(host_path),))
    before = HostSnapshot.take()
    forward = "net.ipv4.ip_forward"
    old_forward = before.sysctls[forward]
    cgroup = CGROUP_ROOT / "pids" / "grok-hoststate-test"
    try:
        sh("ip", "link", "add", "grokrnt0", "type", "bridge")
        sh("nft", "add", "table", "ip", "grok_hoststate_test")
        sh("iptables", "-N", "GROK-HOSTSTATE-TEST")
        _sysctl_path(forward).write_text("0\n" if old_forward == "1" else "1\n")
        host_path.mkdir()
        mount_point = tmp_path / "mnt"
        mount_point.mkdir()
        sh("mount", "-t", "tmpfs", "tmpfs", str(mount_point))
        if cgroup.parent.is_dir():
            cgroup.mkdir()
        assert len(before.compare()) >= 5
    finally:
        problems = before.restore()
    assert problems == []
    assert before.compare() == []
    assert not host_path.exists()
    assert not cgroup.exists()
    assert _sysctl_path(forward).read_text().strip() == old_forward
