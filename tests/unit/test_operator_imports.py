"""Layering: importing every operator module never pulls in JAX, gRPC or the model code."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import grok_operator

SCRIPT = """
import importlib, json, pkgutil, sys
import grok_operator
names = ["grok_operator"] + [m.name for m in pkgutil.walk_packages(grok_operator.__path__, "grok_operator.")
                             if m.name != "grok_operator.__main__"]
for name in names:
    importlib.import_module(name)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"jax", "jaxlib", "grpc", "numpy"}
               or m.startswith(("grok_worker.model.", "grok_worker.engine", "grok_worker.server")))
print(json.dumps({"imported": names, "heavy": heavy}))
"""


def test_importing_every_operator_module_leaves_jax_out() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=120
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    expected = {m.name for m in pkgutil.walk_packages(grok_operator.__path__, "grok_operator.")}
    assert set(report["imported"]) >= expected - {"grok_operator.__main__"}
    assert "grok_operator.handlers" in report["imported"]
    assert report["heavy"] == []


def test_the_package_does_not_shadow_the_standard_library_operator_module() -> None:
    import operator

    assert hasattr(operator, "itemgetter")
    assert grok_operator.__name__ == "grok_operator"
