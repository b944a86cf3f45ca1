"""`grok-operator`: the `crd` subcommand, argument checks and JSON logs."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
import yaml

from grok_operator.cli import JsonFormatter, main
from grok_operator.crd import render_crd_yaml


def test_crd_prints_the_generated_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crd"]) == 0
    out = capsys.readouterr().out
    assert out == render_crd_yaml()
    assert yaml.safe_load(out)["kind"] == "CustomResourceDefinition"


def test_run_asks_which_namespaces_to_watch(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run"]) == 2
    assert "--namespace NS (repeatable) or --all-namespaces" in capsys.readouterr().err


def test_namespace_and_all_namespaces_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        main(["run", "--namespace", "a", "--all-namespaces"])


def test_peering_and_standalone_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        main(["run", "-A", "--peering", "p", "--standalone"])


def test_json_logs_are_one_object_per_line() -> None:
    record = logging.LogRecord("grok", logging.WARNING, __file__, 1, "group %s recreated", ("g0",), None)
    entry = json.loads(JsonFormatter().format(record))
    assert (entry["level"], entry["logger"], entry["message"]) == ("warning", "grok", "group g0 recreated")


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "grok_operator", "crd"], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout == render_crd_yaml()


def test_wakeup_successes_are_not_logged_but_everything_else_is(caplog: pytest.LogCaptureFixture) -> None:
    import grok_operator.runtime  # noqa: F401  (installs the filter on kopf's object logger)

    logger = logging.getLogger("kopf.objects")
    with caplog.at_level(logging.INFO, logger="kopf.objects"):
        logger.info("Handler 'register.<locals>.pod_changed' succeeded.")
        logger.info("reconciled: phase Ready, 1 write(s)")
        logger.error("Handler 'register.<locals>.pod_changed' failed with an exception.")
    assert [r.getMessage() for r in caplog.records] == [
        "reconciled: phase Ready, 1 write(s)",
        "Handler 'register.<locals>.pod_changed' failed with an exception.",
    ]
