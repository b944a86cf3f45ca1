"""Binding gRPC servers, and the plaintext health-only server for kubelet probes.

Kubelet's gRPC probes cannot speak TLS or send tokens, so with TLS on the API the probes go to a
second grpc.aio server that registers nothing but grpc.health.v1, sharing the API server's
`HealthServicer` (one state, two ports). Anything else on it answers UNIMPLEMENTED. It binds to the
pod IP (the downward API's `GROK_POD_IP`), else the configured bind address, else loopback.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2_grpc

from grok_worker.contract import GroupEnv, SecuritySection
from grok_worker.server.listen import grpc_address
from grok_worker.server.wire import HealthServicer


def health_only_server(health: HealthServicer) -> grpc.aio.Server:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    return server


def health_host(security: SecuritySection, group: GroupEnv) -> str:
    """Where the health-only port binds: the pod IP, else bind_address, else loopback."""
    return group.pod_ip or security.bind_address or "127.0.0.1"


def bind_grpc(
    server: grpc.aio.Server, host: str, port: int, credentials: grpc.ServerCredentials | None, setting: str
) -> int:
    """Add a (secure when `credentials`) port; OSError naming `setting` when it cannot be bound."""
    address = grpc_address(host, port)
    try:
        if credentials is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, credentials)
    except RuntimeError:  # grpc reports a failed bind as RuntimeError
        bound = 0
    if bound == 0:
        raise OSError(f"could not bind the gRPC port {address} ({setting}): is it in use?")
    return int(bound)
