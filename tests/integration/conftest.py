"""Fixtures shared by the operator's integration tests: one in-process operator per test module
(started against the session's control plane, stopped after the module) and a `Kube` helper bound
to the test's own namespace. A module that needs other operator settings defines its own
`operator`, which takes precedence."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from test_operator_support import Kube, operator_fixture

from grok_operator.runtime import OperatorThread


@pytest.fixture(scope="module")
def operator(cluster: Any) -> Iterator[OperatorThread]:
    yield from operator_fixture(cluster)


@pytest.fixture
def kube(cluster: Any, namespace: str, operator: OperatorThread) -> Kube:
    return Kube(cluster, namespace)
