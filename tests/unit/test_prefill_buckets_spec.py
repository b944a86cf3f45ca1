"""spec.serving.prefillBuckets and maxPromptLength: validated against the model's and the spec's
maximum sequence length by the same rule the worker applies at start (contract.prefill_bucket_problem),
and rendered into the worker config."""

from __future__ import annotations

import json
from typing import Any

import pytest

from grok_operator.render.config import config_json
from grok_operator.validation import SpecProblem, ValidSpec, validate
from grok_worker.contract import WorkerConfig, prefill_bucket_problem


def tiny(**serving: Any) -> dict[str, Any]:
    return {
        "model": {"preset": "tiny", "checkpoint": {"hostPath": {"path": "/m"}}},
        "topology": {"hostsPerReplica": 1, "gpusPerHost": 1, "gpuMemory": "16Gi"},
        "serving": serving,
    }


def rendered_buckets(**serving: Any) -> list[int]:
    valid = validate(tiny(**serving), name="chat")
    assert isinstance(valid, ValidSpec), valid
    config = WorkerConfig.model_validate(json.loads(config_json(valid)))
    return list(config.serving.prefill_buckets)


def test_buckets_and_max_prompt_length_reach_the_worker_config() -> None:
    assert rendered_buckets() == []  # the worker's default
    assert rendered_buckets(prefillBuckets=[16, 48]) == [16, 48]
    assert rendered_buckets(maxPromptLength=100) == [16, 32, 64, 100]


@pytest.mark.parametrize(
    ("serving", "field", "words"),
    [
        ({"prefillBuckets": [64, 16]}, "spec.serving.prefillBuckets", "strictly ascending"),
        (
            {"prefillBuckets": [16, 256]},
            "spec.serving.prefillBuckets",
            "must be below the maximum sequence length 256",
        ),
        (
            {"maxPromptLength": 500},
            "spec.serving.maxPromptLength",
            "must be below the maximum sequence length 256",
        ),
        (
            {"maxSequenceLength": 64, "maxPromptLength": 64},
            "spec.serving.maxPromptLength",
            "maximum sequence length 64",
        ),
        ({"prefillBuckets": [16], "maxPromptLength": 16}, "spec.serving.maxPromptLength", "not both"),
    ],
)
def test_bad_buckets_are_refused_naming_the_field(serving: dict[str, Any], field: str, words: str) -> None:
    problems = validate(tiny(**serving), name="chat")
    assert isinstance(problems, list)
    matching = [p for p in problems if isinstance(p, SpecProblem) and p.field == field]
    assert matching, problems
    assert words in matching[0].message


def test_the_operator_and_the_worker_share_one_rule() -> None:
    assert prefill_bucket_problem([8, 4], 100) == "[8, 4] must be positive and strictly ascending"
    assert prefill_bucket_problem([8, 16], 100) is None
