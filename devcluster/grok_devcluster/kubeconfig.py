"""Render the admin kubeconfig of a run: the CA, client certificate and key embedded as data.

Embedding (rather than pointing at files) keeps the kubeconfig usable on its own by kubectl,
helm, the kubernetes Python client and kopf, for as long as the run lasts.
"""

from __future__ import annotations

import base64
from pathlib import Path

import yaml


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def render_kubeconfig(server: str, ca_cert: Path, client_cert: Path, client_key: Path, name: str) -> str:
    """A one-cluster, one-user kubeconfig whose current context is `name`."""
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": server, "certificate-authority-data": _b64(ca_cert)}}
        ],
        "users": [
            {
                "name": f"{name}-admin",
                "user": {"client-certificate-data": _b64(client_cert), "client-key-data": _b64(client_key)},
            }
        ],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": f"{name}-admin", "namespace": "default"}}
        ],
        "current-context": name,
        "preferences": {},
    }
    return yaml.safe_dump(document, sort_keys=False)


def write_kubeconfig(path: Path, text: str) -> None:
    """Write with mode 0600 from the start: it holds the admin key."""
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text, encoding="utf-8")
