"""What a real node changes on the machine, recorded before it starts and put back on `down`.

Data flow: `HostSnapshot.take()` reads the sysctls the node's parts are known to write, the
nftables ruleset (iptables on this Debian is iptables-nft, so kube-proxy's chains live there too),
which of the host paths they create already exist, the entries of /run/netns, the mount points,
the network links and the top-level cgroups -> saved as JSON in the run folder -> `restore()`
after the node's processes have stopped: unmount what was mounted since, delete the links,
tables, folders and cgroups that are new, rewrite the ruleset's changed tables and the sysctls.
`compare()` lists what still differs; the tests assert it is empty.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: Written by the kubelet on start (protectKernelDefaults is false), the CNI bridge plugin
#: (ip_forward) and kube-proxy (route_localnet, bridge-nf-call-iptables).
SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.forwarding",
    "net.ipv4.conf.default.forwarding",
    "net.ipv6.conf.all.forwarding",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
)
#: Host paths containerd, the kubelet and the CNI plugins create whatever their configuration says.
HOST_PATHS = (
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/kubelet",
    "/var/lib/cni",
    "/var/lib/containers",
    "/var/lib/containerd",
    "/run/containerd",
    "/run/netns",
    "/var/run/netns",
    "/etc/cni",
    "/opt/cni",
)
NETNS = Path("/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def read_sysctls() -> dict[str, str]:
    values = {}
    for key in SYSCTLS:
        try:
            values[key] = _sysctl_path(key).read_text().strip()
        except OSError:
            continue  # not in this kernel
    return values


def mount_points() -> list[str]:
    """Mount points of this mount namespace, in mount order."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        points.append(line.split()[4].replace("\\040", " "))
    return points


def links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())


def cgroups() -> list[str]:
    """Top-level cgroup folders of every controller hierarchy (where the kubelet would add kubepods)."""
    if not CGROUP_ROOT.is_dir():
        return []
    found = []
    for hierarchy in sorted(p for p in CGROUP_ROOT.iterdir() if p.is_dir()):
        found += [str(child) for child in sorted(hierarchy.iterdir()) if child.is_dir()]
    return found


def nft_tables() -> dict[str, str]:
    """`nft list ruleset`, split into one text per table ("ip nat" -> its block)."""
    if shutil.which("nft") is None:
        return {}
    out = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, check=True).stdout
    tables: dict[str, str] = {}
    current = ""
    for line in out.splitlines():
        if line.startswith("table "):
            current = line.removeprefix("table ").removesuffix("{").strip()
            tables[current] = ""
        if current:
            tables[current] += line + "\n"
    return tables


def iptables_save() -> str:
    """iptables-save without its timestamp comments (the legacy view, for the record and the tests)."""
    if shutil.which("iptables-save") is None:
        return ""
    out = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    return "".join(line + "\n" for line in out.splitlines() if not line.startswith("#"))


@dataclass
class HostSnapshot:
    sysctls: dict[str, str] = field(default_factory=dict)
    nft: dict[str, str] = field(default_factory=dict)
    iptables: str = ""
    existing_paths: list[str] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)

    @classmethod
    def take(cls) -> HostSnapshot:
        return cls(
            sysctls=read_sysctls(),
            nft=nft_tables(),
            iptables=iptables_save(),
            existing_paths=[p for p in HOST_PATHS if Path(p).exists()],
            netns=sorted(p.name for p in NETNS.iterdir()) if NETNS.is_dir() else [],
            mounts=mount_points(),
            links=links(),
            cgroups=cgroups(),
        )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> HostSnapshot:
        return cls(**json.loads(path.read_text()))

    def restore(self) -> list[str]:
        """Put the machine back as recorded; returns what could not be undone (normally nothing)."""
        problems: list[str] = []
        problems += _unmount_new(self.mounts)
        problems += _delete_new_links(self.links)
        if NETNS.is_dir():
            for entry in sorted({p.name for p in NETNS.iterdir()} - set(self.netns)):
                (NETNS / entry).unlink(missing_ok=True)
        _restore_nft(self.nft, problems)
        for key, value in self.sysctls.items():
            try:
                if _sysctl_path(key).read_text().strip() != value:
                    _sysctl_path(key).write_text(value + "\n")
            except OSError as err:
                problems.append(f"sysctl {key}={value}: {err}")
        for path in HOST_PATHS:
            if path not in self.existing_paths and Path(path).exists():
                if Path(path).is_symlink() or Path(path).is_file():
                    Path(path).unlink()
                else:
                    shutil.rmtree(path, ignore_errors=True)
                if Path(path).exists():
                    problems.append(f"could not remove {path}")
        for cgroup in sorted(set(cgroups()) - set(self.cgroups)):
            problems += _remove_cgroup(Path(cgroup))
        return problems

    def compare(self) -> list[str]:
        """Each way the machine now differs from this snapshot."""
        now = HostSnapshot.take()
        differences = []
        for name in ("sysctls", "nft", "iptables", "existing_paths", "netns", "mounts", "links", "cgroups"):
            if getattr(now, name) != getattr(self, name):
                differences.append(f"{name}: was {getattr(self, name)!r}, now {getattr(now, name)!r}")
        return differences


def _run(argv: list[str], problems: list[str], stdin: str | None = None) -> None:
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        problems.append(f"`{' '.join(argv)}` failed: {result.stderr.strip()}")


def _delete_new_links(before: list[str], timeout_s: float = 5.0) -> list[str]:
    """Delete links that are new (the bridge, veths); a veth also vanishes by itself once its
    pod's network namespace is released, so one already gone is no problem."""
    deadline = time.monotonic() + timeout_s
    while True:
        new = sorted(set(links()) - set(before))
        if not new:
            return []
        for name in new:
            subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)
        if time.monotonic() > deadline:
            left = sorted(set(links()) - set(before))
            return [f"network links {left} would not go away"] if left else []
        time.sleep(0.1)


def _unmount_new(before: list[str]) -> list[str]:
    problems: list[str] = []
    known = set(before)
    # Deepest (latest) first; a lazy unmount detaches even a mount a dying process still holds.
    for point in reversed(mount_points()):
        if point not in known:
            _run(["umount", "-l", point], problems)
    return problems


def _restore_nft(before: dict[str, str], problems: list[str]) -> None:
    now = nft_tables()
    for table, text in now.items():
        if before.get(table) != text:
            _run(["nft", "delete", "table", *table.split()], problems)
    for table, text in before.items():
        if now.get(table) != text:
            _run(["nft", "-f", "-"], problems, stdin=text)


def _remove_cgroup(path: Path) -> list[str]:
    """rmdir a cgroup and its children, deepest first (cgroup folders only go away by rmdir)."""
    for child in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        try:
            child.rmdir()
        except OSError:
            continue
    try:
        path.rmdir()
    except OSError as err:
        return [f"could not remove cgroup {path}: {err}"]
    return []
