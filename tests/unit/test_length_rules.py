"""Each length limit is one function of the contract (`sequence_problem`, `prefill_bucket_problem`)
that the operator's validation, the worker's start and its engine all call: the same bad lengths are
refused at every site, in the same words, each naming its own field."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from grok_operator.validation import ValidSpec, validate
from grok_worker.contract import prefill_bucket_problem, sequence_problem
from grok_worker.model_config import PRESETS
from grok_worker.server.config import ConfigError, resolve
from grok_worker.server.main import add_arguments

TINY_MAX = PRESETS["tiny"].max_seq_len  # 256

#: (case, spec.serving, worker flags, operator field, worker field, the contract's words,
#:  the engine's max_seq_len and buckets)
CASES = [
    (
        "a sequence longer than the model's",
        {"maxSequenceLength": TINY_MAX + 44},
        ["--max-seq-len", str(TINY_MAX + 44)],
        "spec.serving.maxSequenceLength",
        "serving.max_seq_len",
        sequence_problem(TINY_MAX + 44, TINY_MAX),
        (TINY_MAX + 44, (16,)),
    ),
    (
        "buckets out of order",
        {"prefillBuckets": [64, 16]},
        ["--prefill-buckets", "64,16"],
        "spec.serving.prefillBuckets",
        "serving.prefill_buckets",
        prefill_bucket_problem([64, 16], TINY_MAX),
        (TINY_MAX, (64, 16)),
    ),
    (
        "a largest bucket that leaves no room for the completion",
        {"prefillBuckets": [16, TINY_MAX]},
        ["--prefill-buckets", f"16,{TINY_MAX}"],
        "spec.serving.prefillBuckets",
        "serving.prefill_buckets",
        prefill_bucket_problem([16, TINY_MAX], TINY_MAX),
        (TINY_MAX, (16, TINY_MAX)),
    ),
    (
        "a bucket as long as a shorter explicit sequence",
        {"maxSequenceLength": 64, "prefillBuckets": [16, 64]},
        ["--max-seq-len", "64", "--prefill-buckets", "16,64"],
        "spec.serving.prefillBuckets",
        "serving.prefill_buckets",
        prefill_bucket_problem([16, 64], 64),
        (64, (16, 64)),
    ),
]
IDS = [case[0] for case in CASES]


def operator_problems(serving: dict[str, Any]) -> list[str]:
    spec = {
        "model": {"preset": "tiny", "checkpoint": {"hostPath": {"path": "/m"}}},
        "topology": {"hostsPerReplica": 1, "gpusPerHost": 1, "gpuMemory": "16Gi"},
        "serving": serving,
    }
    result = validate(spec, name="chat")
    return [] if isinstance(result, ValidSpec) else [str(p) for p in result]


def worker_start(flags: list[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    resolve(parser.parse_args(["--preset", "tiny", *flags]), environ={})


@pytest.mark.parametrize(
    ("case", "serving", "flags", "spec_field", "field", "words", "engine"), CASES, ids=IDS
)
def test_operator_and_worker_start_refuse_the_same_lengths_in_the_same_words(
    case: str,
    serving: dict[str, Any],
    flags: list[str],
    spec_field: str,
    field: str,
    words: str | None,
    engine: tuple[int, tuple[int, ...]],
) -> None:
    assert words is not None, f"{case}: the contract accepts it"
    assert f"{spec_field}: {words}" in operator_problems(serving)
    with pytest.raises(ConfigError) as err:
        worker_start(flags)
    assert f"{field}: {words}" in str(err.value)


@pytest.mark.parametrize(
    ("case", "serving", "flags", "spec_field", "field", "words", "engine"), CASES, ids=IDS
)
def test_the_engine_refuses_them_too(
    case: str,
    serving: dict[str, Any],
    flags: list[str],
    spec_field: str,
    field: str,
    words: str | None,
    engine: tuple[int, tuple[int, ...]],
) -> None:
    from grok_worker.engine.model_engine import ModelEngine  # imports JAX; the checks come first

    max_seq_len, buckets = engine
    with pytest.raises(ValueError, match="^" + field) as err:
        ModelEngine(PRESETS["tiny"], {}, 1, max_seq_len, buckets)
    assert str(err.value) == f"{field}: {words}"


def test_lengths_within_the_limits_pass_everywhere() -> None:
    serving = {"maxSequenceLength": 128, "prefillBuckets": [16, 64]}
    assert operator_problems(serving) == []
    worker_start(["--max-seq-len", "128", "--prefill-buckets", "16,64"])
