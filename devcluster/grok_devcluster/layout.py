"""The files of one control-plane run and the loopback ports its processes listen on.

A run lives in one temporary folder (`RunLayout.root`); every path a process or client needs is
a property here, so argument building (components.py), start-up (cluster.py) and clean-up agree
on where things are without passing a dozen paths around.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Ports:
    """Loopback TCP ports of one run."""

    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int

    @classmethod
    def allocate(cls) -> Ports:
        """Pick distinct free ports; all sockets stay bound until every port is chosen."""
        return cls(*free_ports(5))


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback TCP ports (all held until every one is chosen)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass(frozen=True)
class RunLayout:
    """Paths inside the run folder."""

    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd-data"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "admin.kubeconfig"

    @property
    def kwok_config(self) -> Path:
        return self.root / "kwok.yaml"

    def cert_dir(self, component: str) -> Path:
        """Where a component keeps the self-signed serving certificate of its health endpoint."""
        return self.root / "certs" / component

    def log_file(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def create(self) -> None:
        for folder in (self.pki, self.logs, self.etcd_data, self.root / "certs"):
            folder.mkdir(parents=True, exist_ok=True)
        self.etcd_data.chmod(0o700)
