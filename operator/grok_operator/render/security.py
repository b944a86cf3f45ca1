"""What makes a worker pod restricted and what it mounts for TLS, tokens and its group key (pure).

Data flow: `ValidSpec` (spec.podSecurity, spec.sharedMemorySize, spec.serving.tls/auth, and
`tls_client_ca`, which the reconcile sets from the TLS Secret's keys and
spec.serving.tls.clientCertificates) → the pod and container
securityContext, the Secret and emptyDir volumes with their mounts, the extra environment, and the
worker config's `SecuritySection` (the mounted paths, the plaintext health port). statefulset.py
puts them into the pod template and config.py into the worker config, so the two always agree.

Restricted (Pod Security Standard "restricted"): non-root UID, no privilege escalation, every
capability dropped, seccomp RuntimeDefault. The root filesystem is read-only; the only writable
places are emptyDirs: /tmp (TMPDIR), the worker's HOME (CUDA's compute cache, Triton and XLA
autotuning caches live under it), and the memory-backed /dev/shm with a size limit.
"""

from __future__ import annotations

import base64

from grok_operator.render.common import Obj, Owner, group_labels, group_name, metadata
from grok_operator.validation import ValidSpec
from grok_worker.contract import (
    DEFAULT_HEALTH_PORT,
    DEFAULT_STEP_PORT,
    GROUP_SECRET_KEY,
    GROUP_SECRET_MOUNT_DIR,
    TLS_CLIENT_CA_MOUNT_DIR,
    TLS_MOUNT_DIR,
    TOKENS_MOUNT_DIR,
    Env,
    SecuritySection,
    TLSSection,
)

#: The leader's step-broadcast port (grok_worker.contract; the worker derives it the same way).
STEP_PORT = DEFAULT_STEP_PORT
#: Keys of a kubernetes.io/tls Secret; ca.crt is optional (the client CA, per clientCertificates).
TLS_CERT_KEY = "tls.crt"
TLS_KEY_KEY = "tls.key"
TLS_CA_KEY = "ca.crt"
#: The worker's HOME: an emptyDir (the image's own home does not exist and the root is read-only).
WORKER_HOME = "/home/grok"
#: Secret files are readable by the owner and the pod's fsGroup only.
SECRET_FILE_MODE = 0o440


def group_secret_name(name: str, index: int) -> str:
    """The Secret holding replica group `index`'s step-channel key."""
    return f"{group_name(name, index)}-step-key"


def has_step_channel(valid: ValidSpec) -> bool:
    """Whether a group's leader sends steps to followers (and so needs a step key): more than one host."""
    return valid.spec.topology.hosts_per_replica > 1


def _own_client_ca(valid: ValidSpec) -> str | None:
    """The Secret named by spec.serving.tls.clientCASecretName, when client certificates are on."""
    tls = valid.spec.serving.tls
    return tls.client_ca_secret_name if tls is not None and valid.tls_client_ca else None


def _client_ca_file(valid: ValidSpec) -> str:
    """The client CA the worker trusts: the TLS Secret's ca.crt, or the own CA Secret's; "" = none."""
    if not valid.tls_client_ca:
        return ""
    return f"{TLS_CLIENT_CA_MOUNT_DIR if _own_client_ca(valid) else TLS_MOUNT_DIR}/{TLS_CA_KEY}"


def security_section(valid: ValidSpec) -> SecuritySection:
    """The worker config's security section: where the mounted Secrets are, and the health port."""
    serving = valid.spec.serving
    tls = TLSSection()
    if serving.tls is not None:
        tls = TLSSection(
            cert_file=f"{TLS_MOUNT_DIR}/{TLS_CERT_KEY}",
            key_file=f"{TLS_MOUNT_DIR}/{TLS_KEY_KEY}",
            client_ca_file=_client_ca_file(valid),
        )
    return SecuritySection(
        tls=tls,
        tokens_dir=TOKENS_MOUNT_DIR if serving.auth is not None else "",
        group_secret_file=f"{GROUP_SECRET_MOUNT_DIR}/{GROUP_SECRET_KEY}" if has_step_channel(valid) else "",
        health_port=DEFAULT_HEALTH_PORT,
    )


def pod_security_context(valid: ValidSpec) -> Obj:
    ids = valid.spec.pod_security
    return {
        "runAsNonRoot": True,
        "runAsUser": ids.run_as_user,
        "runAsGroup": ids.run_as_group,
        "fsGroup": ids.fs_group,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> Obj:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def security_env() -> list[Obj]:
    """The pod IP (the health port binds to it) and a writable HOME."""
    return [
        {"name": Env.POD_IP, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "HOME", "value": WORKER_HOME},
    ]


def health_port() -> Obj:
    return {"name": "health", "containerPort": DEFAULT_HEALTH_PORT, "protocol": "TCP"}


def _secret_volume(name: str, secret: str, keys: tuple[str, ...] = ()) -> Obj:
    source: Obj = {"secretName": secret, "defaultMode": SECRET_FILE_MODE}
    if keys:
        source["items"] = [{"key": key, "path": key} for key in keys]
    return {"name": name, "secret": source}


def volumes(owner_name: str, valid: ValidSpec, index: int) -> list[Obj]:
    """The writable emptyDirs and the Secret volumes of group `index`'s pods."""
    spec = valid.spec
    out: list[Obj] = [
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shared_memory_size}},
        {"name": "tmp", "emptyDir": {}},
        {"name": "home", "emptyDir": {}},
    ]
    if has_step_channel(valid):
        out.append(_secret_volume("group-key", group_secret_name(owner_name, index), (GROUP_SECRET_KEY,)))
    own_ca = _own_client_ca(valid)
    if spec.serving.tls is not None:
        with_ca = valid.tls_client_ca and own_ca is None
        keys = (TLS_CERT_KEY, TLS_KEY_KEY, *((TLS_CA_KEY,) if with_ca else ()))
        out.append(_secret_volume("tls", spec.serving.tls.secret_name, keys))
    if own_ca is not None:
        # ca.crt only: a CA's own Secret also holds its private key, which never reaches a pod.
        out.append(_secret_volume("tls-client-ca", own_ca, (TLS_CA_KEY,)))
    if spec.serving.auth is not None:
        # Every key, and no items list: the kubelet then updates the files when the Secret changes.
        out.append(_secret_volume("tokens", spec.serving.auth.token_secret_name))
    return out


def volume_mounts(valid: ValidSpec) -> list[Obj]:
    serving = valid.spec.serving
    mounts: list[Obj] = [
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "home", "mountPath": WORKER_HOME},
    ]
    if has_step_channel(valid):
        mounts.append({"name": "group-key", "mountPath": GROUP_SECRET_MOUNT_DIR, "readOnly": True})
    if serving.tls is not None:
        mounts.append({"name": "tls", "mountPath": TLS_MOUNT_DIR, "readOnly": True})
    if _own_client_ca(valid) is not None:
        mounts.append({"name": "tls-client-ca", "mountPath": TLS_CLIENT_CA_MOUNT_DIR, "readOnly": True})
    if serving.auth is not None:
        mounts.append({"name": "tokens", "mountPath": TOKENS_MOUNT_DIR, "readOnly": True})
    return mounts


def group_secret(owner: Owner, index: int, key: str) -> Obj:
    """Replica group `index`'s Secret with its step-channel key (created once, never rewritten).
    The key is text (hex): the worker strips whitespace around the file's content."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(owner, group_secret_name(owner.name, index), group_labels(owner.name, index)),
        "type": "Opaque",
        "data": {GROUP_SECRET_KEY: base64.b64encode(key.encode()).decode()},
    }
