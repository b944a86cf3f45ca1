"""`grok-operator`: run the operator, or print the GrokDeployment CRD.

grok-operator run [--namespace NS ... | --all-namespaces] [--peering NAME | --standalone]
                  [--priority N|random] [--peering-lifetime SECONDS] [--log-level LEVEL] [--log-format plain|json] [--liveness URL]
                  [--metrics-address HOST:PORT]
grok-operator crd            # the generated CRD YAML (what the chart ships)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import secrets
import signal
import sys
from collections.abc import Sequence

from grok_operator.crd import render_crd_yaml
from grok_operator.http_port import parse_address
from grok_operator.ratelimit import CreateLimits
from grok_operator.runtime import PEERING_LIFETIME_SECONDS, OperatorConfig, serve

#: /metrics and /readyz: every interface, like kopf's liveness endpoint, since the kubelet's probe
#: and Prometheus reach a pod at its IP; the port beside the liveness port (8080).
DEFAULT_METRICS_ADDRESS = "0.0.0.0:8081"


class JsonFormatter(logging.Formatter):
    """One JSON object per log line (for log collectors)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("k8s_ref",):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class PlainFormatter(logging.Formatter):
    """One line per record, naming the object it is about (kopf's `k8s_ref`) when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict) and ref.get("name"):
            where = f"{ref['namespace']}/{ref['name']}" if ref.get("namespace") else str(ref["name"])
            line = f"{line} [{ref.get('kind', 'object')} {where}]" if where not in line else line
        return line


class RetriedTooManyRequests(logging.Filter):
    """kopf logs every request it will retry at ERROR, also one the apiserver answered 429 Too Many
    Requests: "storage is (re)initializing" (its cache of a kind is still filling: the first list of
    a just-installed CRD, or after etcd came back) and API Priority and Fairness turning requests
    away under load. kopf waits as told and retries; that is flow control, not a failure. Such a
    line is logged at INFO while the cache fills and at WARNING when throttled; kopf's last attempt
    ("escalating") and every other retried error stay ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno != logging.ERROR or "failed; will retry:" not in message:
            return True
        if "APITooManyRequestsError(" not in message:
            return True
        level = logging.INFO if "storage is (re)initializing" in message else logging.WARNING
        record.levelno, record.levelname = level, logging.getLevelName(level)
        return logging.getLogger(record.name).isEnabledFor(level)


def _priority(text: str) -> int:
    """An integer, or "random": 1 .. 2**31-1 from the OS's random source, so two replicas of one
    Deployment (the same arguments) still differ, and one of them acts."""
    if text == "random":
        return secrets.randbelow(2**31 - 1) + 1
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither an integer nor 'random'") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grok-operator", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the operator")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="namespace to watch (repeatable; globs allowed)",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    peer = run.add_mutually_exclusive_group()
    peer.add_argument("--peering", metavar="NAME", help="KopfPeering object shared by operator replicas")
    peer.add_argument("--standalone", action="store_true", help="no peering (the default)")
    run.add_argument(
        "--priority",
        type=_priority,
        default=0,
        metavar="N|random",
        help="peering priority of this replica; 'random' picks a distinct one per process (the chart's "
        "choice: kopf pauses every operator when two share the highest priority)",
    )
    run.add_argument(
        "--peering-lifetime",
        type=int,
        default=PEERING_LIFETIME_SECONDS,
        metavar="SECONDS",
        help="a peer silent this long is presumed dead and a standby takes over",
    )
    run.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then ~/.kube/config)")
    run.add_argument("--context", help="kubeconfig context")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument("--log-format", default="plain", choices=["plain", "json"])
    run.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        metavar="URL",
        help="liveness endpoint for the pod's probes ('' to disable)",
    )
    run.add_argument(
        "--metrics-address",
        type=lambda value: parse_address(value) if value else None,
        default=parse_address(DEFAULT_METRICS_ADDRESS),
        metavar="HOST:PORT",
        help=f"where /metrics (Prometheus) and /readyz (the readiness probe) are served "
        f"(default {DEFAULT_METRICS_ADDRESS}; '' for neither)",
    )
    run.add_argument("--resync-seconds", type=float, default=30.0, help="re-check every object this often")
    run.add_argument("--workers", type=int, default=16, help="threads running reconcile passes")
    limits = CreateLimits()
    run.add_argument(
        "--create-rate", type=float, default=limits.rate, help="replica groups created per second, overall"
    )
    run.add_argument("--create-burst", type=int, default=limits.burst, help="groups created at once, overall")
    run.add_argument(
        "--deployment-create-rate",
        type=float,
        default=limits.per_deployment_rate,
        help="replica groups created per second for one GrokDeployment",
    )
    run.add_argument(
        "--deployment-create-burst",
        type=int,
        default=limits.per_deployment_burst,
        help="groups created at once for one GrokDeployment",
    )
    sub.add_parser("crd", help="print the GrokDeployment CustomResourceDefinition (YAML)")
    return parser


def _configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(PlainFormatter())
    handler.addFilter(RetriedTooManyRequests())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "crd":
        sys.stdout.write(render_crd_yaml())
        return 0
    if not args.all_namespaces and not args.namespace:
        print(
            "grok-operator run: choose what to watch: --namespace NS (repeatable) or --all-namespaces",
            file=sys.stderr,
        )
        return 2
    _configure_logging(args.log_level, args.log_format)
    if args.peering:
        logging.getLogger(__name__).info(
            "peering %r with priority %d, lifetime %d s", args.peering, args.priority, args.peering_lifetime
        )
    config = OperatorConfig(
        namespaces=tuple(args.namespace),
        all_namespaces=args.all_namespaces,
        kubeconfig=args.kubeconfig,
        context=args.context,
        peering=args.peering,
        priority=args.priority,
        peering_lifetime=args.peering_lifetime,
        resync_seconds=args.resync_seconds,
        liveness_endpoint=args.liveness or None,
        metrics_address=args.metrics_address,
        workers=args.workers,
        create_limits=CreateLimits(
            rate=args.create_rate,
            burst=args.create_burst,
            per_deployment_rate=args.deployment_create_rate,
            per_deployment_burst=args.deployment_create_burst,
        ),
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(config, stop_flag=stop)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
