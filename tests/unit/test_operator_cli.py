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


def _status(code: int, reason: str, message: str) -> dict[str, object]:
    """A metav1.Status body as kube-apiserver sends it for a 429."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {"retryAfterSeconds": 0},
        "code": code,
    }


async def _kopf_get_through(answers: list[tuple[int, dict[str, object]]], logger: logging.Logger) -> None:
    """kopf's own request code (the one its watches and patches use) against a loopback server
    that gives `answers` in turn; kopf retries every one but the last."""
    from aiohttp import web
    from kopf._cogs.clients import api
    from kopf._cogs.clients.auth import vault_var
    from kopf._cogs.configs.configuration import OperatorSettings
    from kopf._cogs.structs.credentials import ConnectionInfo, Vault

    queue = list(answers)

    async def answer(_: web.Request) -> web.Response:
        code, body = queue.pop(0)
        return web.json_response(body, status=code)

    app = web.Application()
    app.router.add_get("/apis/serving.grok.dev/v1alpha1/grokdeployments", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    vault = Vault()
    await vault.populate({"test": ConnectionInfo(server=f"http://127.0.0.1:{port}")})
    token = vault_var.set(vault)
    settings = OperatorSettings()
    settings.networking.error_backoffs = [0.01] * (len(answers) - 1)
    try:
        await api.get("/apis/serving.grok.dev/v1alpha1/grokdeployments", settings=settings, logger=logger)
    finally:
        vault_var.reset(token)
        await vault.close()
        await runner.cleanup()


def test_retried_429s_are_not_logged_as_errors_but_other_failures_are() -> None:
    import asyncio

    from grok_operator.cli import RetriedTooManyRequests

    logger = logging.getLogger("test-kopf-retries")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    handler.addFilter(RetriedTooManyRequests())
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    initializing = _status(429, "TooManyRequests", "storage is (re)initializing")
    throttled = _status(429, "TooManyRequests", "Too many requests, please try again later.")
    broken = _status(500, "InternalError", "etcdserver: request timed out")
    listed = {"kind": "GrokDeploymentList", "items": [], "metadata": {"resourceVersion": "7"}}
    try:
        asyncio.run(
            _kopf_get_through([(429, initializing), (429, throttled), (500, broken), (200, listed)], logger)
        )
        with pytest.raises(Exception, match="Too many requests"):
            asyncio.run(_kopf_get_through([(429, throttled)], logger))  # kopf's last attempt
        logger.setLevel(logging.WARNING)  # --log-level WARNING: the INFO line is not shown
        asyncio.run(_kopf_get_through([(429, initializing), (200, listed)], logger))
    finally:
        logger.removeHandler(handler)
    failures = [(r.levelname, r.getMessage()) for r in records if "failed;" in r.getMessage()]
    assert [level for level, _ in failures] == ["INFO", "WARNING", "ERROR", "ERROR"], failures
    assert "storage is (re)initializing" in failures[0][1]
    assert "will retry" in failures[2][1]
    assert "escalating" in failures[3][1]
