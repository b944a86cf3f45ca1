"""Prometheus metrics of one worker, served on their own HTTP port.

Data flow: the scheduler (engine thread and asyncio side) and the server's load sequence call the
methods of `ServingMetrics`; `server.metrics_port.MetricsPort` exposes its registry over HTTP
(`/metrics` only) for Prometheus to scrape. Each instance has its own registry, so several servers (tests) can live in
one process.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServingMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "grok_requests",
            "Generation requests by outcome (length, stop, eos, cancelled, error, "
            "rejected_queue_full, rejected_invalid, rejected_unavailable) and front door (grpc, http).",
            ["outcome", "api"],
            registry=r,
        )
        self.queue_depth = Gauge("grok_queue_depth", "Requests waiting for a decode slot.", registry=r)
        self.active_slots = Gauge("grok_active_slots", "Decode slots in use.", registry=r)
        self.slot_utilization = Gauge(
            "grok_kv_slot_utilization", "Fraction of KV-cache decode slots in use.", registry=r
        )
        self.ttft = Histogram(
            "grok_time_to_first_token_seconds",
            "From arrival to the first generated token.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "grok_inter_token_latency_seconds",
            "Between consecutive tokens of one request.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.step = Histogram(
            "grok_decode_step_seconds",
            "Duration of one batched decode step.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "grok_generated_tokens", "Generated tokens (rate() gives tokens per second).", registry=r
        )
        self.load_progress = Gauge(
            "grok_load_progress", "Checkpoint load and compile progress, 0 to 1.", registry=r
        )
        self.serving = Gauge("grok_serving", "1 when health is SERVING, else 0.", registry=r)

    def finished(self, outcome: str, api: str = "grpc") -> None:
        self.requests.labels(outcome=outcome, api=api).inc()

    def set_queue(self, waiting: int, active: int, slots: int) -> None:
        self.queue_depth.set(waiting)
        self.active_slots.set(active)
        self.slot_utilization.set(active / slots if slots else 0.0)

    def first_token(self, seconds: float) -> None:
        self.ttft.observe(seconds)

    def inter_token(self, seconds: float) -> None:
        self.itl.observe(seconds)

    def decode_step(self, seconds: float) -> None:
        self.step.observe(seconds)

    def tokens_generated(self, n: int) -> None:
        self.tokens.inc(n)
