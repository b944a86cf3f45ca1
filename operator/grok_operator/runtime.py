"""Start the operator: kopf settings, credentials, and the event loop, for the CLI and for tests.

Data flow: `OperatorConfig` (from `grok-operator run` flags, or a test) → a fresh kopf registry
with our handlers (handlers.py), kopf settings (peering, logging, no log-to-Event posting), a login
handler that hands kopf the same credentials our `KubeApi` uses → the /metrics and /readyz port
(http_port.py) and the child watches of the namespaces named on the command line are started →
`kopf.operator()` until the stop flag is set. `run_in_thread()` is how integration tests embed a real operator in-process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes import client as k8s

from grok_operator import constants as c
from grok_operator.handlers import OperatorState, register
from grok_operator.http_port import HttpPort
from grok_operator.kube import KubeApi, load_configuration
from grok_operator.ratelimit import CreateLimiter, CreateLimits
from grok_operator.slots import PrioritySlots

#: Seconds after its last keep-alive that a peer counts as dead: a standby takes over this long after
#: the active operator stops (kopf's default is 60; each replica then writes its keep-alive every 5-10 s).
PEERING_LIFETIME_SECONDS = 15
#: A namespace name, not one of kopf's patterns (globs, negations, comma-separated lists).
_LITERAL_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@dataclass(frozen=True)
class OperatorConfig:
    """Everything `grok-operator run` can be told."""

    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False
    kubeconfig: str | None = None
    context: str | None = None
    #: None: standalone (no peering); else the KopfPeering object shared by operator replicas.
    peering: str | None = None
    #: kopf pauses every operator when peers share the highest priority: replicas need distinct ones.
    priority: int = 0
    peering_lifetime: int = PEERING_LIFETIME_SECONDS
    resync_seconds: float = 30.0
    liveness_endpoint: str | None = None
    #: Where /metrics and /readyz are served (host, port; port 0 picks one); None: not served.
    metrics_address: tuple[str, int] | None = None
    #: Worker threads running reconcile passes (Kubernetes calls block; a pass is mostly waiting
    #: on the apiserver, so more threads than cores).
    workers: int = 16
    #: Replica-group creations per second and burst, overall and per GrokDeployment.
    create_limits: CreateLimits = field(default_factory=CreateLimits)
    extra_settings: dict[str, Any] = field(default_factory=dict)


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf's diff base is for on.create/on.update handlers, which this operator has none of (its
    daemons and event handlers never read it); kopf still builds one per watch event, a deep copy
    of every body. This storage builds, fetches and stores nothing."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def connection_info(configuration: k8s.Configuration) -> kopf.ConnectionInfo:
    """kopf credentials equal to those of our kubernetes client configuration."""
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization"
    )
    scheme, token = None, None
    if header:
        parts = header.split(" ", 1)
        scheme, token = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


def build(config: OperatorConfig) -> tuple[kopf.OperatorRegistry, kopf.OperatorSettings, OperatorState]:
    """The registry, settings and shared state of one operator instance."""
    configuration = load_configuration(config.kubeconfig, config.context)
    # One HTTP connection per reconcile thread (the client's pool is 5 per CPU otherwise).
    configuration.connection_pool_maxsize = max(config.workers, 4)
    state = OperatorState(
        api=KubeApi(configuration),
        all_namespaces=config.all_namespaces,
        resync_seconds=config.resync_seconds,
        limiter=CreateLimiter(config.create_limits),
        slots=PrioritySlots(config.workers),
    )
    registry = kopf.OperatorRegistry()
    register(registry, state)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(load_configuration(config.kubeconfig, config.context))

    settings = kopf.OperatorSettings()
    # Our own Events are explicit and rare; kopf must not turn every log line into an Event write.
    settings.posting.enabled = False
    settings.persistence.finalizer = c.FINALIZER
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.peering.standalone = config.peering is None
    if config.peering is not None:
        settings.peering.name = config.peering
        settings.peering.mandatory = True
        settings.peering.priority = config.priority
        settings.peering.lifetime = config.peering_lifetime
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    for dotted, value in config.extra_settings.items():
        section, attr = dotted.split(".", 1)
        setattr(getattr(settings, section), attr, value)
    return registry, settings, state


async def serve(
    config: OperatorConfig,
    *,
    stop_flag: threading.Event | asyncio.Event | None = None,
    ready_flag: threading.Event | None = None,
    state_out: list[OperatorState] | None = None,
) -> None:
    """Run the operator in the current event loop until `stop_flag` is set."""
    registry, settings, state = build(config)
    if state_out is not None:
        state_out.append(state)
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="reconcile")
    )
    port = None
    if config.metrics_address is not None:
        port = HttpPort(state.metrics, state.metrics_snapshot)
        await port.start(*config.metrics_address)
    _watch_children_of(config, state)
    try:
        await kopf.operator(
            registry=registry,
            settings=settings,
            clusterwide=config.all_namespaces,
            namespaces=list(config.namespaces),
            standalone=config.peering is None,
            peering_name=config.peering,
            priority=config.priority,
            liveness_endpoint=config.liveness_endpoint,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    finally:
        if port is not None:
            await port.stop()
        state.watches.stop()
        state.api.close()


def _watch_children_of(config: OperatorConfig, state: OperatorState) -> None:
    """Start the child watches of every namespace the operator is told to watch by name, before
    any GrokDeployment arrives, so readiness reports a watch that cannot list (RBAC) at once and a
    first pass finds its namespace listed. A pattern (kopf's globs) is watched when an object in
    a namespace it matches first runs its loop."""
    if config.all_namespaces:
        state.watches.ensure(None)
        return
    for namespace in config.namespaces:
        if _LITERAL_NAMESPACE.fullmatch(namespace):
            state.watches.ensure(namespace)


class OperatorThread:
    """A real operator in a background thread (integration tests, benchmarks)."""

    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._states: list[OperatorState] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="grok-operator", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(
                serve(self.config, stop_flag=self._stop, ready_flag=self._ready, state_out=self._states)
            )
        except BaseException as err:  # surfaced by stop()
            self._error = err
            self._ready.set()

    @property
    def state(self) -> OperatorState:
        return self._states[0]

    def start(self, timeout: float = 30.0) -> OperatorThread:
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise RuntimeError(f"operator did not start: {self._error!r}")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError("operator thread did not stop")
        if self._error is not None and not isinstance(self._error, asyncio.CancelledError):
            raise RuntimeError(f"operator failed: {self._error!r}") from self._error

    def __enter__(self) -> OperatorThread:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


class QuietWakeups(logging.Filter):
    """Drop kopf's per-event "Handler ... succeeded." lines for the wake-up handlers (one per
    GrokDeployment event: noise at INFO); failures and everything else still pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            message.endswith("succeeded.") and "_changed'" in message and record.levelno <= logging.INFO
        )


logging.getLogger("kubernetes").setLevel(logging.WARNING)
logging.getLogger("kopf.objects").addFilter(QuietWakeups())
