"""Bound how fast the operator creates replica groups: per GrokDeployment and overall.

Each new group is a StatefulSet the StatefulSet controller must fill with pods; without a bound,
one object asking for thousands of groups makes the operator create them as fast as the apiserver
answers and starves the controllers of every other workload. Two token buckets (one shared, one
per GrokDeployment) hand out group creations; what a pass cannot create now it creates in a later
pass, and the status says how far the scale-up got.

Data flow: reconcile.py asks `take(key, wanted)` for the groups it would create this pass → the
number it may create; `wait(key)` → seconds until the next creation is allowed (its requeue).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CreateLimits:
    """Group creations per second and the burst allowed at once, overall and per GrokDeployment."""

    rate: float = 20.0
    burst: int = 40
    per_deployment_rate: float = 5.0
    per_deployment_burst: int = 10


@dataclass
class _Bucket:
    rate: float
    capacity: float
    tokens: float
    stamp: float

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait(self, amount: float = 1.0) -> float:
        return max(0.0, (amount - self.tokens) / self.rate) if self.rate > 0 else math.inf


@dataclass
class CreateLimiter:
    """Thread-safe: reconcile passes of different objects run in different threads."""

    limits: CreateLimits = field(default_factory=CreateLimits)
    clock: Callable[[], float] = time.monotonic
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _shared: _Bucket | None = None
    _own: dict[tuple[str, str], _Bucket] = field(default_factory=dict)

    def _buckets(self, key: tuple[str, str]) -> tuple[_Bucket, _Bucket]:
        now = self.clock()
        if self._shared is None:
            self._shared = _Bucket(self.limits.rate, self.limits.burst, self.limits.burst, now)
        own = self._own.setdefault(
            key,
            _Bucket(
                self.limits.per_deployment_rate,
                self.limits.per_deployment_burst,
                self.limits.per_deployment_burst,
                now,
            ),
        )
        self._shared.refill(now)
        own.refill(now)
        return self._shared, own

    def take(self, key: tuple[str, str], wanted: int) -> int:
        """How many of `wanted` group creations `key` may make now (taken from both buckets)."""
        if wanted <= 0:
            return 0
        with self._lock:
            shared, own = self._buckets(key)
            allowed = max(0, min(wanted, math.floor(shared.tokens), math.floor(own.tokens)))
            shared.tokens -= allowed
            own.tokens -= allowed
            return allowed

    def wait(self, key: tuple[str, str]) -> float:
        """Seconds until `key` may create one more group."""
        with self._lock:
            shared, own = self._buckets(key)
            return max(shared.wait(), own.wait())

    def forget(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._own.pop(key, None)
