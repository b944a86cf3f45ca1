"""The manifests in examples/ checked without a cluster: each GrokDeployment parses with the operator's
own validation (the same rules the reconciler applies) and the capacity planner agrees with the state
its header claims. The apiserver and the running operator check them again in
tests/integration/test_examples.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from grok_operator.capacity import plan_memory
from grok_operator.validation import ValidSpec, validate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PATHS = sorted(EXAMPLES.glob("*.yaml"))


def grokdeployment(path: Path) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    found = [d for d in docs if d["kind"] == "GrokDeployment"]
    assert len(found) == 1, f"{path.name}: expected exactly one GrokDeployment"
    return found[0]


def test_the_three_documented_examples_exist() -> None:
    assert {p.name for p in PATHS} >= {"tiny-cpu.yaml", "grok-1-int8-1x8.yaml", "grok-1-int8-2x8.yaml"}


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_each_example_states_the_phase_it_reaches(path: Path) -> None:
    assert re.search(r"^# Expected state: [A-Z]\w+", path.read_text(), flags=re.M), (
        f"{path.name}: add a `# Expected state: <Phase>` line to its header"
    )


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_each_example_passes_the_operators_validation_and_fits_its_gpus(path: Path) -> None:
    doc = grokdeployment(path)
    assert doc["apiVersion"] == "serving.grok.dev/v1alpha1"
    result = validate(doc["spec"], name=doc["metadata"]["name"])
    assert isinstance(result, ValidSpec), f"{path.name}: {result}"
    spec = result.spec
    plan = plan_memory(
        result.model,
        quantization=spec.model.quantization,
        mesh=result.mesh,
        max_batch=spec.serving.max_batch,
        max_seq_len=spec.serving.max_sequence_length,
        device_memory_bytes=result.device_memory_bytes,
    )
    claims_ready = "# Expected state: Ready" in path.read_text()
    assert plan.fits == claims_ready, f"{path.name}: {plan.summary}"


def test_pvc_examples_mount_the_claim_they_define() -> None:
    for path in PATHS:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
        pvc = grokdeployment(path)["spec"]["model"]["checkpoint"].get("pvc")
        if pvc is not None:
            assert pvc["claimName"] in claims, (
                f"{path.name}: claim {pvc['claimName']!r} is not defined in the file"
            )
