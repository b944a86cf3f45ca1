"""Run the real Kueue (gang admission, GPU quotas) next to a local control plane, on request.

Kueue is the upstream program, built from its Go module at the version pinned in versions.toml
(binaries.py), started as a plain process on loopback like the other components. Nothing about
it is re-implemented here; this module only wires it to a cluster with no pod network:

    module source (Go module cache; `go mod download` fetches it when missing)
      config/components/crd/bases      -> CRDs; those the release converts through Kueue's webhook
                                          (crd/kustomization.yaml patches) get a URL conversion webhook
      config/components/webhook/...    -> admission webhooks, kept only for Kueue's own kinds and
                                          pods (the one integration enabled), each registered by URL
                                          https://127.0.0.1:<port><path> with a fresh CA as caBundle,
                                          pod webhooks limited to namespaces labelled MANAGED_LABEL
    Configuration (pure, below)        -> the process: webhooks served on 127.0.0.1 with pki.py's
                                          loopback certificate, no leader election, pod integration,
                                          managedJobsNamespaceSelector = MANAGED_LABEL

Order matters: CRDs first (Kueue's informers need them), then the process, then, once it answers
/readyz, the admission webhooks; so creating a pod never fails on a Kueue that is not serving yet.
Only namespaces labelled `devcluster.grok.dev/kueue=managed` are ever sent to Kueue's pod webhooks.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .build import BuildError, find_go
from .handle import ClusterHandle
from .pki import generate_loopback_serving_pki
from .probes import is_healthy, wait_until
from .process import ProcessRecord, log_tail, spawn, stop_together
from .versions import load_groups

Obj = dict[str, Any]

KUEUE_BINARY = "kueue"
KUEUE_NAMESPACE = "kueue-system"
KUEUE_API_GROUP = "kueue.x-k8s.io"
#: Namespaces carrying this label (value MANAGED_VALUE) are the ones Kueue manages pods in.
MANAGED_LABEL = "devcluster.grok.dev/kueue"
MANAGED_VALUE = "managed"
#: The only integration enabled: plain pods and pod groups (see docs/scheduling.md for why).
FRAMEWORKS = ("pod",)
#: Kueue reads its metrics certificate from this fixed folder whenever its internal certificate
#: management is off (cmd/kueue/main.go); it must exist even with the metrics server disabled.
METRICS_CERT_DIR = Path("/etc/kueue/metrics/certs")
#: Names of the webhook registrations (the release's own names, prefixed as its kustomization does).
WEBHOOK_CONFIGURATION_NAMES = {
    "MutatingWebhookConfiguration": "kueue-mutating-webhook-configuration",
    "ValidatingWebhookConfiguration": "kueue-validating-webhook-configuration",
}


class KueueError(RuntimeError):
    """Kueue could not be set up or started; the message says what to do."""


# ---- the module source ------------------------------------------------------------------------


def kueue_version() -> str:
    return load_groups()["kueue"].version


def module_source(version: str | None = None) -> Path:
    """The Kueue module's source folder in the Go module cache, downloaded when it is missing."""
    version = version or kueue_version()
    try:
        go = find_go()
    except BuildError as err:
        raise KueueError(f"Kueue's CRDs and webhooks are read from its Go module source: {err}") from err
    with tempfile.TemporaryDirectory(prefix="grok-devcluster-kueue-src-") as tmp:
        env = {**os.environ, "GOFLAGS": "-mod=mod", "GOWORK": "off"}
        result = subprocess.run(
            [go, "mod", "download", "-json", f"sigs.k8s.io/kueue@{version}"],
            cwd=tmp,
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
        )
    info = json.loads(result.stdout or "{}")
    if result.returncode != 0 or "Dir" not in info:
        raise KueueError(
            f"`go mod download sigs.k8s.io/kueue@{version}` failed: {info.get('Error') or result.stderr.strip()}; "
            "check that the Go module proxy is reachable (GOPROXY)"
        )
    return Path(info["Dir"])


def _load_yaml(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def converted_crd_names(source: Path) -> set[str]:
    """CRDs the release converts between versions through Kueue's webhook: the names in the
    patches that crd/kustomization.yaml lists (taken from the module, not copied here)."""
    crd_dir = source / "config" / "components" / "crd"
    kustomization = _load_yaml(crd_dir / "kustomization.yaml")[0]
    names = set()
    for patch in kustomization.get("patches") or []:
        path = crd_dir / str(patch.get("path", ""))
        for doc in _load_yaml(path) if path.is_file() else []:
            if (doc.get("spec") or {}).get("conversion", {}).get("strategy") == "Webhook":
                names.add(str(doc["metadata"]["name"]))
    return names


def crd_documents(source: Path, webhook_url: str, ca_bundle: str) -> list[Obj]:
    """Kueue's CRDs, with URL conversion webhooks where the release has service ones."""
    converted = converted_crd_names(source)
    bases = sorted((source / "config" / "components" / "crd" / "bases").glob("*.yaml"))
    crds = [doc for path in bases for doc in _load_yaml(path)]
    for crd in crds:
        if crd["metadata"]["name"] in converted:
            crd["spec"]["conversion"] = {
                "strategy": "Webhook",
                "webhook": {
                    "clientConfig": {"url": f"{webhook_url}/convert", "caBundle": ca_bundle},
                    "conversionReviewVersions": ["v1"],
                },
            }
    return crds


def _served(webhook: Obj) -> bool:
    """Whether Kueue serves this webhook with only FRAMEWORKS enabled: its own kinds and pods."""
    groups = {group for rule in webhook.get("rules") or [] for group in rule.get("apiGroups") or []}
    resources = {res for rule in webhook.get("rules") or [] for res in rule.get("resources") or []}
    return groups == {KUEUE_API_GROUP} or (groups == {""} and resources == {"pods"})


def webhook_configurations(source: Path, webhook_url: str, ca_bundle: str) -> list[Obj]:
    """The release's admission webhooks that this Kueue serves, registered by URL on loopback."""
    selector = {"matchLabels": {MANAGED_LABEL: MANAGED_VALUE}}
    configurations = []
    for doc in _load_yaml(source / "config" / "components" / "webhook" / "manifests.yaml"):
        webhooks = []
        for webhook in doc.get("webhooks") or []:
            if not _served(webhook):
                continue
            path = webhook["clientConfig"]["service"]["path"]
            webhook["clientConfig"] = {"url": f"{webhook_url}{path}", "caBundle": ca_bundle}
            if any("pods" in (rule.get("resources") or []) for rule in webhook["rules"]):
                webhook["namespaceSelector"] = selector
            webhooks.append(webhook)
        doc["metadata"] = {"name": WEBHOOK_CONFIGURATION_NAMES[doc["kind"]]}
        doc["webhooks"] = webhooks
        configurations.append(doc)
    return configurations


# ---- the process ------------------------------------------------------------------------------


@dataclass(frozen=True)
class KueuePorts:
    webhook: int
    health: int

    @classmethod
    def allocate(cls) -> KueuePorts:
        sockets = []
        try:
            for _ in range(2):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.bind(("127.0.0.1", 0))
                sockets.append(sock)
            return cls(*(sock.getsockname()[1] for sock in sockets))
        finally:
            for sock in sockets:
                sock.close()


def configuration(ports: KueuePorts, cert_dir: Path) -> Obj:
    """Kueue's Configuration (config.kueue.x-k8s.io/v1beta2) for a loopback process."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": KUEUE_NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{ports.health}"},  # /readyz and /healthz
        # "0" turns the metrics server off: nothing scrapes it here.
        "metrics": {"bindAddress": "0"},
        "webhook": {"host": "127.0.0.1", "port": ports.webhook, "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        # Its internal certificates name the in-cluster Service; ours name 127.0.0.1.
        "internalCertManagement": {"enable": False},
        "managedJobsNamespaceSelector": {"matchLabels": {MANAGED_LABEL: MANAGED_VALUE}},
        "integrations": {"frameworks": list(FRAMEWORKS)},
        # The on-demand visibility API needs an APIService the apiserver calls through a Service.
        "featureGates": {"VisibilityOnDemand": False},
    }


def kueue_argv(binary: Path, config_file: Path, kubeconfig: str) -> list[str]:
    return [str(binary), f"--config={config_file}", f"--kubeconfig={kubeconfig}", "--zap-log-level=info"]


def ensure_metrics_certificate(folder: Path = METRICS_CERT_DIR) -> None:
    """Kueue exits at start without a certificate in METRICS_CERT_DIR (see there); make one."""
    if (folder / "tls.crt").is_file() and (folder / "tls.key").is_file():
        return
    try:
        generate_loopback_serving_pki(folder, "kueue-metrics")
    except OSError as err:
        raise KueueError(
            f"Kueue {kueue_version()} reads a metrics certificate from {folder} and cannot start "
            f"without one, which this user cannot create ({err}). Create it once as root: "
            f"`sudo mkdir -p {folder}` and give this user write access, then retry."
        ) from err


@dataclass
class KueueRun:
    """A running Kueue process and what it registered; `stop()` undoes both."""

    handle: ClusterHandle
    record: ProcessRecord
    popen: subprocess.Popen[bytes]
    ports: KueuePorts
    folder: Path

    def unregister_webhooks(self) -> None:
        for kind, name in WEBHOOK_CONFIGURATION_NAMES.items():
            self.handle.kubectl("delete", kind.lower(), name, "--ignore-not-found", check=False)

    def stop(self) -> list[str]:
        """Remove the admission webhooks (so pods no longer wait on it), then stop the process."""
        self.unregister_webhooks()
        return stop_together([(self.record, self.popen)])


def _apply(handle: ClusterHandle, documents: Iterable[Obj]) -> None:
    body = "\n---\n".join(json.dumps(doc) for doc in documents)
    # Server-side: the Workload CRD is too large for client-side apply's last-applied annotation.
    handle.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=grok-devcluster",
        "-f",
        "-",
        input=body,
    )


def install_crds(handle: ClusterHandle, crds: list[Obj], timeout_s: float) -> None:
    _apply(handle, crds)
    handle.wait_crds_established([crd["metadata"]["name"] for crd in crds], timeout_s=timeout_s)


def start_kueue(
    handle: ClusterHandle,
    binary: Path,
    folder: Path,
    log: Path,
    *,
    die_with_parent: bool = False,
    timeout_s: float = 90.0,
    on_spawn: Callable[[subprocess.Popen[bytes], ProcessRecord], None] | None = None,
) -> KueueRun:
    """Install Kueue's CRDs, start it on loopback, register its webhooks; return when it serves.

    `on_spawn` hears of the process as soon as it exists (a caller's state file); on a failure the
    process is stopped again and KueueError carries the tail of its log.
    """
    ensure_metrics_certificate()
    source = module_source()
    certs = generate_loopback_serving_pki(folder / "webhook-certs", "kueue-webhook")
    ca_bundle = base64.b64encode(certs.ca_cert.read_bytes()).decode()
    ports = KueuePorts.allocate()
    webhook_url = f"https://127.0.0.1:{ports.webhook}"
    handle.kubectl("create", "namespace", KUEUE_NAMESPACE, check=False)
    install_crds(handle, crd_documents(source, webhook_url, ca_bundle), timeout_s)
    config_file = folder / "configuration.yaml"
    config_file.write_text(yaml.safe_dump(configuration(ports, certs.cert.parent)), encoding="utf-8")
    log.parent.mkdir(parents=True, exist_ok=True)
    popen, record = spawn(
        KUEUE_BINARY, kueue_argv(binary, config_file, handle.kubeconfig), log, die_with_parent=die_with_parent
    )
    if on_spawn is not None:
        on_spawn(popen, record)
    run = KueueRun(handle, record, popen, ports, folder)
    try:
        wait_until(
            lambda: is_healthy(f"http://127.0.0.1:{ports.health}/readyz"),
            timeout_s,
            "Kueue to answer /readyz",
            abort=lambda: None if popen.poll() is None else f"kueue exited with code {popen.returncode}",
        )
        _apply(handle, webhook_configurations(source, webhook_url, ca_bundle))
    except BaseException as err:
        run.stop()
        if isinstance(err, Exception):
            raise KueueError(f"starting Kueue failed: {err}; last lines of {log}:\n{log_tail(log)}") from err
        raise
    return run


def label_namespace_managed(handle: ClusterHandle, namespace: str) -> None:
    """Let Kueue manage the pods of `namespace` (its webhooks and managedJobsNamespaceSelector)."""
    handle.kubectl("label", "namespace", namespace, f"{MANAGED_LABEL}={MANAGED_VALUE}", "--overwrite")
