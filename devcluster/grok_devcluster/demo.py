"""The end-to-end demo: `python -m grok_devcluster.demo up|down` (what `make demo` runs).

`up` walks the whole path a user takes, printing each step. Where a real node can run (Linux,
root, the packages of `grok-devcluster setup-node`), everything runs in real pods (demo_pods.py):
the images are built from docker/, the chart's operator Deployment runs 1 replica in-cluster, the
worker pod loads the checkpoint from a hostPath volume, passes the kubelet's gRPC probes, and
`grok generate` goes through the GrokDeployment's Service. Elsewhere (or with --mode host) the demo
says why and stands in for the pods with local processes:
  1. a cluster: the local control plane (started here, binaries built on first use), or the user's
     own with --kubeconfig / $KUBECONFIG;
  2. `helm upgrade --install` of charts/grok-operator (operator Deployment scaled to 0: no container
     runs on this machine, so the operator runs as a local process instead);
  3. the operator, started in the background with the arguments of the chart's rendered Deployment;
  4. a tiny release-format checkpoint and SentencePiece tokenizer in the state folder;
  5. `kubectl apply -f examples/tiny-cpu.yaml`, then waiting for the GrokDeployment to be Ready;
  6. the worker process of replica group 0, started the way its pod would be: env read from the
     StatefulSet the operator rendered, config from its ConfigMap (paths mapped to the local folder
     the pod's checkpoint volume stands for);
  7. `grok generate` streaming text from the worker's gRPC API.
  8. the same prompt through the worker's OpenAI-compatible HTTP API (the `openai` package).
`down` stops those processes by pid, uninstalls the chart, deletes the demo namespace, stops the
cluster if `up` started it, and removes the state folder.

State (pids, paths, whether the cluster was started here) lives in `.demo/state.json` at the
repository root (gitignored), or in --state-dir.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .handle import ClusterHandle

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "grok-operator"
EXAMPLE = REPO / "examples" / "tiny-cpu.yaml"
RELEASE = "grok-operator"
OPERATOR_NAMESPACE = "grok-system"
DEMO_NAMESPACE = "grok-demo"
CLUSTER_NAME = "grok-demo"
PROMPT = "The quick brown fox"
STEPS = 8
#: What the demo's tiny tokenizer is trained on (a few seconds); the model's weights are random, so
#: the generated text is a random walk over these pieces, not prose.
TOKENIZER_CORPUS = [
    "The quick brown fox jumps over the lazy dog while the operator watches the cluster.",
    "A GrokDeployment names a checkpoint, a topology and a number of replica groups.",
    "Each replica group is a StatefulSet of hosts; host zero leads and serves clients over gRPC.",
    "Workers load int8 weights, compile their steps, and report SERVING when every host has joined.",
    "Kubernetes schedules the pods onto nodes with free GPUs; the scheduler explains what it cannot place.",
    "Once upon a time there was a tiny model that dreamed of becoming three hundred billion parameters.",
    "Numbers such as 2024, 8192 and 131072 are split into digits; emoji like 🙂 fall back to bytes.",
] * 30


@dataclass
class DemoState:
    """What `down` needs to undo `up`; saved as JSON after every step."""

    state_dir: str
    kubeconfig: str = ""
    cluster_name: str = ""
    cluster_started_here: bool = False
    pids: dict[str, int] = field(default_factory=dict)
    worker_target: str = ""
    deployment: str = ""
    # "pods": everything in real pods on a real node; "host": the operator and worker as processes.
    mode: str = "host"

    @property
    def path(self) -> Path:
        return Path(self.state_dir) / "state.json"

    def save(self) -> None:
        self.path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, state_dir: Path) -> DemoState | None:
        path = state_dir / "state.json"
        return cls(**json.loads(path.read_text())) if path.is_file() else None


class DemoError(RuntimeError):
    """A step failed; the message says which and what to look at."""


def say(text: str) -> None:
    print(text, flush=True)


#: Short names of the steps for the closing timing summary.
STEP_LABELS = {
    1: "cluster",
    2: "chart",
    3: "operator",
    4: "model",
    5: "ready",
    6: "worker",
    7: "generate",
    8: "openai",
}
#: (label, monotonic start) of each step of this run, for the closing summary.
_STEP_STARTS: list[tuple[str, float]] = []


def step(number: int, title: str) -> None:
    _STEP_STARTS.append((STEP_LABELS[number], time.monotonic()))
    say(f"\n==> [{number}/{STEPS}] {title}")


def step_summary() -> str:
    ends = [start for _, start in _STEP_STARTS[1:]] + [time.monotonic()]
    parts = [
        f"{title.split(' (')[0]}: {end - start:.1f}s"
        for (title, start), end in zip(_STEP_STARTS, ends, strict=True)
    ]
    return "; ".join(parts)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    what: str, check: Callable[[], bool], timeout_s: float, hint: str, interval_s: float = 0.5
) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout_s:.0f}s waiting for {what}; {hint}")
        time.sleep(interval_s)


# --- background processes --------------------------------------------------------------------


def start_process(
    state: DemoState, name: str, argv: Sequence[str], env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session with output to <state>/<name>.log and record its pid."""
    log = open(Path(state.state_dir) / f"{name}.log", "wb")  # noqa: SIM115 (owned by the child)
    proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    state.pids[name] = proc.pid
    state.save()
    say(f"    started {name} (pid {proc.pid}): {' '.join(argv)}")
    say(f"    log: {log.name}")
    return proc


#: The program each recorded pid must still be running before `down` signals it.
PROGRAMS = {"operator": "grok-operator", "worker": "grok-worker"}


def console_script(name: str) -> str:
    """Path of one of the project's console scripts: beside this interpreter first (a virtualenv
    that is not on PATH, as under `make`), else on PATH, else the bare name."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    return shutil.which(name) or name


def runs_program(pid: int, program: str) -> bool:
    """Whether `pid` is alive and still runs `program` (a recorded pid may have been reused)."""
    proc = Path("/proc")
    if not proc.is_dir():  # no procfs (macOS): trust the state file
        return True
    try:
        return program.encode() in (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False


def stop_process(name: str, pid: int, grace_s: float = 10.0) -> None:
    """SIGTERM the process group `up` started, then SIGKILL after the grace period."""
    if not runs_program(pid, PROGRAMS.get(name, name)):
        say(f"    {name} (pid {pid}) is no longer running")
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child (started by an earlier `up`): poll its existence
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
        else:
            if done:
                break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    say(f"    stopped {name} (pid {pid})")


def tail(path: Path, lines: int = 25) -> str:
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def ensure_alive(state: DemoState, name: str, proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        log = Path(state.state_dir) / f"{name}.log"
        raise DemoError(f"{name} exited with {proc.returncode}; last lines of {log}:\n{tail(log)}")


# --- step 1: the cluster ---------------------------------------------------------------------


def user_cluster(kubeconfig: str, *, allow_build: bool = True) -> ClusterHandle:
    """A handle on the user's cluster, with the pinned kubectl and helm."""
    from .binaries import ensure_binaries

    tools = ensure_binaries(["kubectl", "helm"], allow_build=allow_build, progress=sys.stdout)
    return ClusterHandle(
        name="user",
        kubeconfig=kubeconfig,
        server="",
        kubectl_binary=str(tools["kubectl"].path),
        helm_binary=str(tools["helm"].path),
    )


def connect_cluster(state: DemoState, kubeconfig: str | None, cluster_name: str) -> ClusterHandle:
    """The user's cluster when a kubeconfig is given, else the local control plane (started here)."""
    if kubeconfig:
        say(f"    using your cluster from {kubeconfig}")
        handle = user_cluster(kubeconfig)
    else:
        from .cluster import ClusterOptions, find_cluster, start_cluster

        cluster = find_cluster(cluster_name)
        if cluster is not None and all(cluster.running().values()):
            say(f"    reusing the running local control plane {cluster_name!r}")
        else:
            say(
                "    starting the local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)"
            )
            say("    with one fake node; the first run builds the binaries from their Go modules (tens of")
            say("    minutes on two cores), later runs reuse them from ~/.cache/grok-operator")
            options = ClusterOptions(name=cluster_name, gpu_nodes=1, node_prefix="demo-node")
            cluster = start_cluster(options, progress=sys.stdout)
        handle = cluster.handle
        state.cluster_name = cluster_name
        state.cluster_started_here = True
    state.kubeconfig = handle.kubeconfig
    state.save()
    version = handle.kubectl("version", "-o", "json").stdout
    say(f"    API server version: {json.loads(version)['serverVersion']['gitVersion']}")
    return handle


# --- step 2 and 3: chart and operator --------------------------------------------------------


def install_chart(handle: ClusterHandle) -> dict[str, Any]:
    """helm upgrade --install; return the operator Deployment as the cluster stores it."""
    handle.helm(
        "upgrade",
        "--install",
        RELEASE,
        str(CHART),
        "--namespace",
        OPERATOR_NAMESPACE,
        "--create-namespace",
        "--set",
        "replicaCount=0",
        "--wait",
        "--timeout",
        "2m",
    )
    say(f"    helm release {RELEASE!r} installed in namespace {OPERATOR_NAMESPACE!r}")
    say("    (the operator Deployment is scaled to 0: no container runs here, the operator runs locally)")
    out = handle.kubectl(
        "get",
        "deployments",
        "-n",
        OPERATOR_NAMESPACE,
        "-l",
        f"app.kubernetes.io/instance={RELEASE}",
        "-o",
        "json",
    ).stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    if len(items) != 1:
        raise DemoError(f"expected one operator Deployment in {OPERATOR_NAMESPACE}, found {len(items)}")
    return items[0]


def operator_argv(deployment: dict[str, Any], liveness_port: int, metrics_port: int = 0) -> list[str]:
    """The Deployment's `grok-operator` command and args, with its two listeners moved to loopback
    (the liveness endpoint to `liveness_port`, /metrics and /readyz to `metrics_port`, 0: any)."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    argv = list(container.get("command", [])) + list(container.get("args", []))
    if not argv or Path(argv[0]).name != "grok-operator":
        raise DemoError(f"the chart's operator container does not run grok-operator: {argv}")
    loopback = [
        f"--liveness=http://127.0.0.1:{liveness_port}/healthz",
        f"--metrics-address=127.0.0.1:{metrics_port}",
    ]
    moved = {arg.split("=", 1)[0] for arg in loopback}
    # Both listeners are always set here: the flags' defaults bind every interface.
    kept = [arg for arg in argv[1:] if arg.split("=", 1)[0] not in moved]
    return [console_script("grok-operator"), *kept, *loopback]


def start_operator(
    state: DemoState, handle: ClusterHandle, deployment: dict[str, Any]
) -> subprocess.Popen[bytes]:
    port, metrics_port = free_port(), free_port()
    proc = start_process(state, "operator", operator_argv(deployment, port, metrics_port), handle.env())
    urls = (f"http://127.0.0.1:{port}/healthz", f"http://127.0.0.1:{metrics_port}/readyz")

    def answers(url: str) -> bool:
        ensure_alive(state, "operator", proc)
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    log = f"see {state.state_dir}/operator.log"
    wait_until("the operator's /healthz and /readyz", lambda: all(map(answers, urls)), 120, log)
    say(f"    operator is up and ready: {urls[0]} and {urls[1]} answer 200")
    return proc


# --- step 4: checkpoint and tokenizer --------------------------------------------------------


def write_model(model_dir: Path) -> None:
    """A tiny release-format checkpoint (the worker's own writer, progress on the console) + tokenizer."""
    if (model_dir / "ckpt-0").is_dir() and (model_dir / "tokenizer.model").is_file():
        say(f"    reusing {model_dir}")
        return
    model_dir.mkdir(parents=True, exist_ok=True)
    grok_worker = console_script("grok-worker")
    subprocess.run(
        [grok_worker, "make-checkpoint", "--preset", "tiny", "--seed", "0", str(model_dir)], check=True
    )
    from grok_worker.model_config import get_preset
    from grok_worker.tokenizer import train_tiny_tokenizer

    vocab = get_preset("tiny").vocab_size
    say(f"    training a {vocab}-piece SentencePiece tokenizer")
    train_tiny_tokenizer(model_dir / "tokenizer.model", vocab, TOKENIZER_CORPUS)
    say(f"    wrote {model_dir}/ckpt-0/ and {model_dir}/tokenizer.model")


# --- step 5: the GrokDeployment --------------------------------------------------------------


def apply_example(handle: ClusterHandle) -> str:
    handle.kubectl("create", "namespace", DEMO_NAMESPACE, check=False)
    handle.kubectl("apply", "-n", DEMO_NAMESPACE, "-f", str(EXAMPLE))
    name: str = next(d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d["kind"] == "GrokDeployment")[
        "metadata"
    ]["name"]
    say(f"    kubectl apply -n {DEMO_NAMESPACE} -f {EXAMPLE.relative_to(REPO)}  ->  grokdeployment/{name}")
    return name


def wait_ready(
    state: DemoState, handle: ClusterHandle, name: str, operator: subprocess.Popen[bytes] | None
) -> dict[str, Any]:
    last = ""
    found: dict[str, Any] = {}
    where = (
        f"see {state.state_dir}/operator.log"
        if operator is not None
        else (
            f"see `kubectl logs -n {OPERATOR_NAMESPACE} deploy/{RELEASE}` and `kubectl describe pods -n {DEMO_NAMESPACE}`"
        )
    )

    def ready() -> bool:
        nonlocal last, found
        if operator is not None:
            ensure_alive(state, "operator", operator)
        out = handle.kubectl("get", "grokdeployment", name, "-n", DEMO_NAMESPACE, "-o", "json", check=False)
        if out.returncode != 0:
            return False
        found = json.loads(out.stdout)
        status = found.get("status") or {}
        phase = status.get("phase", "")
        conditions = {c["type"]: c for c in status.get("conditions", [])}
        line = (
            f"phase={phase or '-'} ready={status.get('readyReplicas', 0)}/{found['spec'].get('replicas', 1)}"
        )
        if "Ready" in conditions:
            line += f" ({conditions['Ready'].get('reason', '')}: {conditions['Ready'].get('message', '')})"
        if line != last:
            say(f"    {line}")
            last = line
        return bool(phase == "Ready")

    wait_until(f"grokdeployment/{name} to be Ready", ready, 300, where, 1.0)
    return found


# --- step 6: the worker ----------------------------------------------------------------------


def field_value(field_path: str, pod_name: str, namespace: str, labels: dict[str, str]) -> str:
    """The downward-API value of one fieldRef, for a pod that is not really there."""
    if field_path == "metadata.name":
        return pod_name
    if field_path == "metadata.namespace":
        return namespace
    if field_path.startswith("metadata.labels['") and field_path.endswith("']"):
        return labels.get(field_path[len("metadata.labels['") : -2], "")
    if field_path == "status.podIP":
        return "127.0.0.1"  # the local worker stands in for the pod on loopback
    raise DemoError(f"the demo cannot stand in for downward-API field {field_path!r}")


def _write_secret_volume(volume: dict[str, Any], data: dict[str, str], folder: Path) -> None:
    """The files a Secret volume would hold (its `items`, or every key), readable by this user only."""
    folder.mkdir(parents=True, exist_ok=True)
    items = volume["secret"].get("items") or [{"key": key, "path": key} for key in data]
    for item in items:
        if item["key"] not in data:
            raise DemoError(f"Secret {volume['secret']['secretName']} has no key {item['key']!r}")
        target = folder / item["path"]
        target.write_bytes(base64.b64decode(data[item["key"]]))
        target.chmod(0o600)


def worker_launch(
    statefulset: dict[str, Any],
    configmaps: dict[str, dict[str, str]],
    model_dir: Path,
    state_dir: Path,
    secrets: dict[str, dict[str, str]] | None = None,
) -> tuple[dict[str, str], int]:
    """Env and config file for pod 0 of a group, as the StatefulSet would give it; returns (env, port).

    The checkpoint volume's mount path stands for `model_dir`; Secret volumes (`secrets`: name ->
    base64 data, as the API returns them) and emptyDirs become folders under `state_dir`, and paths
    in the config and the environment follow them; ports move to free loopback ports.
    """
    from grok_worker.contract import CONFIG_FILE_NAME, Env, WorkerConfig

    template = statefulset["spec"]["template"]
    pod_spec = template["spec"]
    container = pod_spec["containers"][0]
    pod_name = f"{statefulset['metadata']['name']}-0"
    labels = {**template["metadata"].get("labels", {}), "apps.kubernetes.io/pod-index": "0"}
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "fieldRef" in var.get("valueFrom", {}):
            env[var["name"]] = field_value(
                var["valueFrom"]["fieldRef"]["fieldPath"],
                pod_name,
                statefulset["metadata"]["namespace"],
                labels,
            )
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
    config_text = ""
    #: mount path in the pod -> the local folder that stands for it
    local_dirs: dict[str, Path] = {}
    for volume_name, mount_path in mounts.items():
        volume = volumes.get(volume_name, {})
        if "configMap" in volume:
            config_text = configmaps[volume["configMap"]["name"]][CONFIG_FILE_NAME]
        elif "hostPath" in volume or "persistentVolumeClaim" in volume:
            local_dirs[mount_path.rstrip("/")] = model_dir
        elif "secret" in volume:
            name = volume["secret"]["secretName"]
            if secrets is None or name not in secrets:
                raise DemoError(
                    f"StatefulSet {pod_name[:-2]} mounts Secret {name}, which the demo did not find"
                )
            local_dirs[mount_path.rstrip("/")] = state_dir / "volumes" / volume_name
            _write_secret_volume(volume, secrets[name], state_dir / "volumes" / volume_name)
        elif "emptyDir" in volume and mount_path != "/dev/shm":
            local_dirs[mount_path.rstrip("/")] = state_dir / "volumes" / volume_name
            (state_dir / "volumes" / volume_name).mkdir(parents=True, exist_ok=True)
    if not config_text or model_dir not in local_dirs.values():
        raise DemoError(f"StatefulSet {pod_name[:-2]} has no worker config or checkpoint volume mounted")

    def local(path: str) -> str:
        for mount_path in sorted(local_dirs, key=len, reverse=True):
            if path == mount_path or path.startswith(mount_path + "/"):
                return str(local_dirs[mount_path]) + path[len(mount_path) :]
        return path

    config = WorkerConfig.model_validate_json(config_text)
    port = free_port()
    security = config.security
    config = config.model_copy(
        update={
            "model": config.model.model_copy(
                update={
                    "checkpoint_path": local(config.model.checkpoint_path),
                    "tokenizer_path": local(config.model.tokenizer_path),
                }
            ),
            "serving": config.serving.model_copy(
                update={
                    "port": port,
                    "metrics_port": free_port(),
                    "http_port": free_port() if config.serving.http_port else 0,
                }
            ),
            "security": security.model_copy(
                update={
                    "tls": security.tls.model_copy(
                        update={
                            field: local(getattr(security.tls, field))
                            for field in ("cert_file", "key_file", "client_ca_file")
                        }
                    ),
                    "tokens_dir": local(security.tokens_dir),
                    "group_secret_file": local(security.group_secret_file),
                    "health_port": free_port() if security.health_port else 0,
                }
            ),
        }
    )
    config_file = state_dir / CONFIG_FILE_NAME
    config_file.write_text(config.model_dump_json(indent=2))
    env = {name: local(value) for name, value in env.items()}
    env[Env.CONFIG_FILE] = str(config_file)
    if env.get(Env.COORDINATOR_ADDRESS):
        env[Env.COORDINATOR_ADDRESS] = f"127.0.0.1:{free_port()}"
    return env, port


def start_worker(
    state: DemoState, handle: ClusterHandle, name: str, model_dir: Path
) -> subprocess.Popen[bytes]:
    sts_list = json.loads(
        handle.kubectl(
            "get",
            "statefulsets",
            "-n",
            DEMO_NAMESPACE,
            "-l",
            f"serving.grok.dev/deployment={name}",
            "-o",
            "json",
        ).stdout
    )["items"]
    if not sts_list:
        raise DemoError(f"the operator rendered no StatefulSet for grokdeployment/{name}")
    statefulset = sorted(sts_list, key=lambda s: s["metadata"]["name"])[0]
    cms = json.loads(handle.kubectl("get", "configmaps", "-n", DEMO_NAMESPACE, "-o", "json").stdout)["items"]
    configmaps = {cm["metadata"]["name"]: cm.get("data", {}) for cm in cms}
    secret_names = {
        v["secret"]["secretName"] for v in statefulset["spec"]["template"]["spec"]["volumes"] if "secret" in v
    }
    secrets = {
        name: json.loads(
            handle.kubectl("get", "secret", name, "-n", DEMO_NAMESPACE, "-o", "json").stdout
        ).get("data", {})
        for name in sorted(secret_names)
    }
    env, port = worker_launch(statefulset, configmaps, model_dir, Path(state.state_dir), secrets)
    say(
        f"    StatefulSet {statefulset['metadata']['name']}: env "
        + ", ".join(f"{k}={v}" for k, v in sorted(env.items()))
    )
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    argv = list(container.get("command", [])) + list(container.get("args", []))
    if not argv or Path(argv[0]).name != "grok-worker":
        raise DemoError(f"the operator's worker container does not run grok-worker: {argv}")
    argv[0] = console_script("grok-worker")
    proc = start_process(state, "worker", argv, {**os.environ, **env, "JAX_PLATFORMS": "cpu"})
    state.worker_target = f"127.0.0.1:{port}"
    state.save()
    grok = console_script("grok")

    def serving() -> bool:
        ensure_alive(state, "worker", proc)
        result = subprocess.run(
            [grok, "health", "--target", state.worker_target], capture_output=True, text=True, check=False
        )
        return result.returncode == 0

    say("    loading the checkpoint and compiling (the worker reports NOT_SERVING until done)")
    wait_until("the worker to report SERVING", serving, 300, f"see {state.state_dir}/worker.log", 1.0)
    say(f"    worker is SERVING on {state.worker_target}")
    return proc


# --- the commands ----------------------------------------------------------------------------


def choose_mode(requested: str, kubeconfig: str | None) -> str:
    """ "pods" where a real node can run (or on the user's own cluster), else "host", saying why."""
    if requested == "host":
        return "host"
    if kubeconfig:
        if requested == "pods":
            raise DemoError("--mode pods runs on the local cluster's real node; drop --kubeconfig")
        return "host"
    from .realnode import check_real_node

    reason = check_real_node()
    if reason is None:
        return "pods"
    if requested == "pods":
        raise DemoError(f"--mode pods: {reason}")
    say(f"NOTE: no real node here ({reason}),")
    say("      so the operator and the worker run as local processes standing in for their pods.")
    return "host"


def show(handle: ClusterHandle, *args: str) -> None:
    """Run a kubectl command a user would run and print it with its output."""
    say(f"    $ kubectl {' '.join(args)}")
    result = handle.kubectl(*args, check=False)
    for line in (result.stdout + result.stderr).strip().splitlines():
        say(f"      {line}")


def up_pods(state: DemoState, prompt: str, max_tokens: int, cluster_name: str) -> None:
    """The demo on real pods (demo_pods.py); see the module docstring."""
    from . import demo_pods

    step(1, "Kubernetes cluster with a real node, and the project's images")
    images = demo_pods.images_for_node()
    handle, seconds = demo_pods.start_real_cluster(cluster_name, images)
    state.cluster_name, state.cluster_started_here, state.kubeconfig = cluster_name, True, handle.kubeconfig
    state.save()
    say(
        f"    imported {', '.join(i.ref for i in images.values())} into the node's containerd in {seconds:.0f}s"
    )
    show(handle, "get", "nodes", "-o", "wide")
    step(2, "Installing the Helm chart (the operator Deployment, 1 replica, in-cluster)")
    demo_pods.install_chart_pods(handle, CHART, RELEASE, OPERATOR_NAMESPACE, images["grok-operator"])
    say(f"    helm release {RELEASE!r} installed in namespace {OPERATOR_NAMESPACE!r}; its pod is Ready")
    step(3, "The operator runs in its pod, under its ServiceAccount")
    show(handle, "get", "pods", "-n", OPERATOR_NAMESPACE, "-o", "wide")
    show(handle, "logs", "-n", OPERATOR_NAMESPACE, f"deploy/{RELEASE}", "--tail=5")
    step(4, "Writing a tiny release-format checkpoint and tokenizer (the pod's hostPath volume)")
    model_dir = Path(state.state_dir) / "model"
    write_model(model_dir)
    step(5, "Applying the tiny GrokDeployment and waiting for Ready")
    manifest = demo_pods.grokdeployment_manifest(EXAMPLE, images["grok-worker"], model_dir)
    handle.kubectl("create", "namespace", DEMO_NAMESPACE, check=False)
    handle.kubectl("apply", "-n", DEMO_NAMESPACE, "-f", "-", input=yaml.safe_dump(manifest))
    state.deployment = manifest["metadata"]["name"]
    state.save()
    say(
        f"    kubectl apply -n {DEMO_NAMESPACE} -f {EXAMPLE.relative_to(REPO)}  (image {images['grok-worker'].ref},"
    )
    say(f"    checkpoint hostPath {model_dir})  ->  grokdeployment/{state.deployment}")
    ready = wait_ready(state, handle, state.deployment, None)
    step(6, "The worker pod: checkpoint loaded, gRPC startup and readiness probes passed")
    show(handle, "get", "pods", "-n", DEMO_NAMESPACE, "-o", "wide")
    pod = f"{state.deployment}-g0-0"
    show(handle, "logs", "-n", DEMO_NAMESPACE, pod, "--tail=8")
    state.worker_target = demo_pods.service_target(handle, DEMO_NAMESPACE, ready)
    state.save()
    step(7, f"Generating through the GrokDeployment's Service: grok generate {prompt!r}")
    endpoint = (ready.get("status") or {}).get("endpoint", "")
    say(
        f"    the Service {endpoint or state.deployment} has ClusterIP {state.worker_target}; kube-proxy routes"
    )
    say("    it from this machine to the worker pod")
    generate(state.worker_target, prompt, max_tokens)
    step(8, "The same through the Service's OpenAI-compatible HTTP port")
    complete_over_http(
        f"http://{demo_pods.service_target(handle, DEMO_NAMESPACE, ready, 'http')}", prompt, max_tokens
    )
    say(f"\nDone in {time.monotonic() - _STEP_STARTS[0][1]:.0f}s ({step_summary()}).")
    say("Everything is still running; try:")
    say(f"    export KUBECONFIG={state.kubeconfig}")
    say("    kubectl get grokdeployments,pods -A -o wide")
    say(f"    kubectl logs -n {DEMO_NAMESPACE} {pod}")
    say(f"    kubectl port-forward -n {DEMO_NAMESPACE} svc/{state.deployment} 50051  # then grok generate")
    say(f"    grok generate --target {state.worker_target} 'Once upon a time'")
    say("    python -m grok_devcluster.demo down      # tear it all down, the machine restored")
    handle.close()


def generate(target: str, prompt: str, max_tokens: int) -> None:
    """`grok generate` against the worker's gRPC API, as a user types it."""
    say("    (random weights: expect gibberish, streamed token by token, sampled with a fixed seed)")
    grok = console_script("grok")
    argv = [grok, "generate", "--target", target, "--max-tokens", str(max_tokens)]
    subprocess.run([*argv, "--temperature", "0.8", "--seed", "0", prompt], check=True)


def host_http_url(state: DemoState) -> str | None:
    """The host-process worker's HTTP API, or None when the GrokDeployment turned it off."""
    from grok_worker.contract import CONFIG_FILE_NAME, WorkerConfig

    config = WorkerConfig.from_file(Path(state.state_dir) / CONFIG_FILE_NAME)
    return f"http://127.0.0.1:{config.serving.http_port}" if config.serving.http_port else None


def complete_over_http(url: str, prompt: str, max_tokens: int) -> None:
    """The same worker through its OpenAI-compatible HTTP API at `url`, with the `openai` package."""
    import openai

    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0.8, "seed": 0})
    say(f"    curl {url}/v1/completions -H 'Content-Type: application/json' -d '{body}'")
    with openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client:
        model = client.models.list().data[0].id
        completion = client.completions.create(
            model=model, prompt=prompt, max_tokens=max_tokens, temperature=0.8, seed=0
        )
    choice = completion.choices[0]
    say(f"    openai: model {model!r}, finish_reason {choice.finish_reason!r}, text {choice.text!r}")


def up(
    state_dir: Path,
    kubeconfig: str | None,
    prompt: str = PROMPT,
    max_tokens: int = 24,
    cluster_name: str = CLUSTER_NAME,
    mode: str = "auto",
) -> DemoState:
    """Run every step; leaves the cluster, operator and worker running for the user to explore."""
    state_dir.mkdir(parents=True, exist_ok=True)
    state = DemoState.load(state_dir) or DemoState(state_dir=str(state_dir))
    for name, pid in list(state.pids.items()):  # a previous `up` left processes behind
        stop_process(name, pid)
        del state.pids[name]
    state.mode = choose_mode(mode, kubeconfig)
    state.save()
    if state.mode == "pods":
        up_pods(state, prompt, max_tokens, cluster_name)
        return state

    step(1, "Kubernetes cluster")
    handle = connect_cluster(state, kubeconfig, cluster_name)
    step(2, "Installing the Helm chart")
    deployment = install_chart(handle)
    step(3, "Starting the operator (as the chart's Deployment would)")
    operator = start_operator(state, handle, deployment)
    step(4, "Writing a tiny release-format checkpoint and tokenizer")
    model_dir = state_dir / "model"
    write_model(model_dir)
    step(5, "Applying the tiny GrokDeployment and waiting for Ready")
    state.deployment = apply_example(handle)
    state.save()
    ready = wait_ready(state, handle, state.deployment, operator)
    step(6, "Starting the worker of replica group 0 (what its pod runs)")
    start_worker(state, handle, state.deployment, model_dir)
    step(7, f"Generating through the gRPC API: grok generate {prompt!r}")
    endpoint = (ready.get("status") or {}).get("endpoint", "")
    say(f"    in a cluster, clients use the GrokDeployment's Service ({endpoint or 'status.endpoint'});")
    say(f"    no kube-proxy runs here, so the CLI talks to the leader directly at {state.worker_target}")
    generate(state.worker_target, prompt, max_tokens)
    step(8, "The same through the OpenAI-compatible HTTP API")
    url = host_http_url(state)
    if url is None:
        say("    the GrokDeployment has spec.serving.http.enabled: false; skipping")
    else:
        complete_over_http(url, prompt, max_tokens)
    say(f"\nDone in {time.monotonic() - _STEP_STARTS[0][1]:.0f}s ({step_summary()}).")
    say("Everything is still running; try:")
    say(f"    KUBECONFIG={state.kubeconfig} kubectl get grokdeployments,pods -A")
    say(f"    grok generate --target {state.worker_target} 'Once upon a time'")
    say("    python -m grok_devcluster.demo down      # tear it all down")
    handle.close()
    return state


def down(state_dir: Path) -> None:
    """Undo `up`: GrokDeployment, processes by pid, chart, namespace, the cluster if `up` started it."""
    state = DemoState.load(state_dir)
    if state is None:
        say(f"nothing to tear down: no {state_dir}/state.json")
        return
    handle: ClusterHandle | None = None
    if not state.cluster_started_here and state.kubeconfig:
        handle = user_cluster(state.kubeconfig, allow_build=False)
        # While the operator still runs, so that it releases its finalizer.
        handle.kubectl(
            "delete", "grokdeployments", "--all", "-n", DEMO_NAMESPACE, "--timeout=60s", check=False
        )
        say(f"    deleted the GrokDeployments in namespace {DEMO_NAMESPACE}")
    for name, pid in state.pids.items():
        stop_process(name, pid)
    if handle is not None:
        handle.kubectl(
            "delete", "namespace", DEMO_NAMESPACE, "--ignore-not-found", "--wait=false", check=False
        )
        handle.helm("uninstall", RELEASE, "--namespace", OPERATOR_NAMESPACE, check=False)
        say(f"    deleted namespace {DEMO_NAMESPACE} and uninstalled release {RELEASE}")
        handle.close()
    if state.cluster_started_here:
        from .cluster import stop_cluster

        if stop_cluster(state.cluster_name):
            say(f"    stopped the local control plane {state.cluster_name!r}")
    shutil.rmtree(state_dir, ignore_errors=True)
    say(f"    removed {state_dir}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m grok_devcluster.demo", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument(
        "--kubeconfig", default=os.environ.get("KUBECONFIG"), help="use this cluster instead of a local one"
    )
    parser.add_argument(
        "--state-dir", type=Path, default=REPO / ".demo", help="where pids, logs and the model go"
    )
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--cluster-name", default=CLUSTER_NAME, help="name of the local control plane")
    parser.add_argument(
        "--mode",
        choices=["auto", "pods", "host"],
        default=os.environ.get("GROK_DEMO_MODE", "auto"),
        help="pods: real pods on a real node; host: local processes stand in for the pods; "
        "auto (default): pods where a real node can run",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up(args.state_dir, args.kubeconfig, args.prompt, args.max_tokens, args.cluster_name, args.mode)
        else:
            down(args.state_dir)
    except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as error:  # DemoError, ClusterError...
        say(f"\nERROR: {error}")
        if isinstance(error, subprocess.CalledProcessError) and error.stderr:
            say(str(error.stderr).strip())
        say("Fix the cause and run `python -m grok_devcluster.demo up` again, or `... down` to clean up.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
