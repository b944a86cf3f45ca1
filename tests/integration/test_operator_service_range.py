"""A full Service ClusterIP range, as the real kube-apiserver reports it, in a GrokDeployment's status.

The operator reads a refused client Service as a shortage by the apiserver's answer (shortages.py:
HTTP 500, "failed to allocate a serviceIP: range is full"); the unit tests give that answer by
hand, this module gets it from kube-apiserver itself. A control plane of its own (4 s to start)
has a /28 service range: 13 Services fill it. Then, with a real operator:

- a GrokDeployment with a ClusterIP client Service is Pending with reason ServiceIPsExhausted,
  a message naming the fixes, and a Warning Event; nothing else is lost (no crash, no hot loop);
- one with `clientService: Headless`, the fix the message names, comes up Ready regardless;
- widening the range with a second ServiceCIDR object, the other fix named, lets the blocked one
  come up on its next retry, its client Service on an address of the new range.
"""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from test_operator_support import Kube, install_crd, one_host, start_operator, wait_for

from grok_operator import constants as c
from grok_operator.shortages import RETRY_SECONDS

pytestmark = pytest.mark.cluster

#: 16 addresses, 14 usable, the `kubernetes` Service on the first: 13 are left for Services.
FULL_RANGE = "10.0.0.0/28"
#: What the test adds when the range is full.
MORE_RANGE = "10.0.1.0/28"


@pytest.fixture(scope="module")
def small_range() -> Iterator[Any]:
    from grok_devcluster.binaries import ALL_BINARIES, ensure_binaries
    from grok_devcluster.build import BuildError
    from grok_devcluster.cluster import ClusterError, ClusterOptions, start_cluster

    try:
        binaries = ensure_binaries(ALL_BINARIES)
        run = start_cluster(
            ClusterOptions(
                name=f"range-{uuid.uuid4().hex[:6]}",
                gpu_nodes=1,
                service_range=FULL_RANGE,
                die_with_parent=True,
            ),
            binaries={name: found.path for name, found in binaries.items()},
        )
    except (BuildError, ClusterError) as err:
        pytest.fail(f"a control plane with a {FULL_RANGE} service range did not start: {err}", pytrace=False)
    try:
        install_crd(run.handle)
        operator = start_operator(run.handle)
        try:
            yield run.handle
        finally:
            operator.stop()
    finally:
        run.stop()


def _fill(kube: Kube) -> list[str]:
    """Create ClusterIP Services until the apiserver refuses one; their names."""
    names: list[str] = []
    for index in range(64):
        name = f"filler-{index}"
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": kube.namespace},
            "spec": {"ports": [{"port": 80}]},
        }
        result = kube.cluster.kubectl("create", "-f", "-", input=json.dumps(service), check=False)
        if result.returncode:
            assert "range is full" in result.stderr, result.stderr
            return names
        names.append(name)
    pytest.fail(f"{len(names)} Services did not fill the {FULL_RANGE} range")


def test_a_full_range_shows_in_the_status_and_both_named_fixes_work(small_range: Any) -> None:
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    small_range.kubectl("create", "namespace", namespace)
    kube = Kube(small_range, namespace)
    assert len(_fill(kube)) == 13

    kube.apply(one_host("blocked", namespace))
    kube.apply(one_host("headless", namespace, serving={"clientService": "Headless"}))
    kube.wait_reason("blocked", c.Reason.SERVICE_IPS_EXHAUSTED)
    status = kube.gd("blocked")["status"]
    assert status["phase"] == c.Phase.PENDING
    message = kube.condition("blocked", "Ready")["message"]
    for fix in ("service-cluster-ip-range", "ServiceCIDR", "clientService: Headless"):
        assert fix in message, message
    events = wait_for(
        "a Warning Event for the full range",
        lambda: [e for e in kube.events("blocked") if e["reason"] == c.Reason.SERVICE_IPS_EXHAUSTED],
    )
    assert events[0]["type"] == "Warning"
    # The headless one needs no ClusterIP: the same full range does not stop it.
    kube.wait_ready("headless", 1)

    small_range.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "ServiceCIDR",
                "metadata": {"name": "more"},
                "spec": {"cidrs": [MORE_RANGE]},
            }
        ),
    )
    kube.wait_ready("blocked", 1, timeout=RETRY_SECONDS + 60)
    client = kube.get("services", "blocked")
    assert client is not None
    assert ipaddress.ip_address(client["spec"]["clusterIP"]) in ipaddress.ip_network(MORE_RANGE)
