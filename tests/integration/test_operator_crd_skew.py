"""`grok-operator run` against the CRD of an earlier build (as after a `helm upgrade`, which never
upgrades a CRD): the operator names the field the apiserver drops and the command that fixes it,
keeps serving, and says so when that command has installed its own CRD."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import threading
from pathlib import Path
from typing import IO, Any

import pytest
from test_operator_support import REPO, Kube, install_crd, small, start_operator_process, wait_for

from grok_operator import constants as c
from grok_operator.crd_skew import FIX

pytestmark = pytest.mark.cluster

OLD_CRD = Path(__file__).parents[1] / "data" / "crd" / "grokdeployments-11d337d.yaml"


class _Log:
    """The operator's JSON log lines, read as they come."""

    def __init__(self, stream: IO[str]) -> None:
        self.entries: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            if line.strip():
                self.entries.append(json.loads(line))

    def find(self, level: str, *words: str) -> dict[str, Any] | None:
        return next(
            (e for e in list(self.entries) if e["level"] == level and all(w in e["message"] for w in words)),
            None,
        )

    def join(self) -> None:
        self._thread.join(10)


def _fix_command() -> list[str]:
    """The first command `FIX` gives, as a user would paste it in the repository root."""
    words = shlex.split(FIX.split(" (from")[0])
    assert words[0] == "kubectl", FIX
    assert "charts/grok-operator/crds/" in words, FIX
    return [str(REPO / w) if w.startswith("charts/") else w for w in words[1:]]


def test_the_operator_names_what_an_older_crd_drops_and_the_command_that_fixes_it(
    cluster: Any, namespace: str
) -> None:
    install_crd(cluster)
    # As Helm leaves it after an upgrade: the older CRD, written by an update (Helm's create is one
    # too: its field manager then owns .spec.versions, which is why the fix needs --force-conflicts).
    cluster.kubectl("replace", "-f", str(OLD_CRD))
    proc = start_operator_process(cluster, namespace)
    assert proc.stderr is not None
    log = _Log(proc.stderr)
    try:
        warning = wait_for("the operator's warning", lambda: log.find("warning", c.CRD_NAME), 60)
        assert "spec.serving.clientService" in warning["message"], warning
        assert FIX in warning["message"], warning

        # The operator still serves what the older CRD can express.
        kube = Kube(cluster, namespace)
        kube.apply(small("skew", namespace, replicas=1))
        kube.wait_ready("skew", 1)

        # The command the warning gives, run as given.
        result = cluster.kubectl(*_fix_command())
        assert "serverside-applied" in result.stdout, result.stdout
        wait_for("the operator to see its own CRD", lambda: log.find("info", c.CRD_NAME, "now matches"), 60)
        assert sum(1 for e in log.entries if e["level"] == "warning" and c.CRD_NAME in e["message"]) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.join()
        install_crd(cluster)
    assert proc.returncode == 0, log.entries[-5:]
