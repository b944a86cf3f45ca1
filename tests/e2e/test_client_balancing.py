"""The `grok` client spreads calls over every address its target resolves to.

A headless client Service (`spec.serving.clientService: Headless`) resolves to each Ready leader;
gRPC's default policy (pick_first) would keep one connection to the first address. Two real gRPC
servers on loopback stand in for two replica groups' leaders, and one target names both (the
`ipv4:` resolver gives the same list of addresses a DNS answer does).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from grok_worker.client.client import AsyncGrokClient, GrokClient


class CountingHealth(health.HealthServicer):
    """The standard health service, counting the Check calls it answers."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self._lock = threading.Lock()

    def Check(  # noqa: N802 (gRPC method name)
        self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        with self._lock:
            self.calls += 1
        return super().Check(request, context)


@pytest.fixture
def leaders() -> Iterator[tuple[str, list[CountingHealth]]]:
    servers, servicers, ports = [], [], []
    for _ in range(2):
        servicer = CountingHealth()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        ports.append(server.add_insecure_port("127.0.0.1:0"))
        server.start()
        servers.append(server)
        servicers.append(servicer)
    yield "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports), servicers
    for server in servers:
        server.stop(grace=None)


def test_blocking_client_calls_every_leader(leaders: tuple[str, list[CountingHealth]]) -> None:
    target, servicers = leaders
    with GrokClient(target, timeout=10) as client:
        answers = {client.health() for _ in range(20)}
    assert answers == {"SERVING"}
    calls = [servicer.calls for servicer in servicers]
    assert sum(calls) == 20
    assert min(calls) >= 5, f"calls per leader {calls}: the client stuck to one address"


async def test_async_client_calls_every_leader(leaders: tuple[str, list[CountingHealth]]) -> None:
    target, servicers = leaders
    client = AsyncGrokClient(target, timeout=10)
    try:
        answers = {await client.health() for _ in range(20)}
    finally:
        await client.close()
    assert answers == {"SERVING"}
    calls = [servicer.calls for servicer in servicers]
    assert min(calls) >= 5, f"calls per leader {calls}: the client stuck to one address"
