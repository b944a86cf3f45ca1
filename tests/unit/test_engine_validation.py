"""Request validation: each bad field is named in the error, good requests become engine requests."""

from __future__ import annotations

import pytest

from grok.v1 import generation_pb2 as pb
from grok_worker.client import build_request
from grok_worker.engine.api import EngineSpec
from grok_worker.engine.requests import GenerationRequest
from grok_worker.engine.text import ByteTokenizer
from grok_worker.model_config import EOS_ID
from grok_worker.server.validation import InvalidRequestError, generation_request

SPEC = EngineSpec("test", max_batch=2, max_seq_len=64, vocab_size=260, eos_id=EOS_ID, prefill_buckets=(8, 16))
TOK = ByteTokenizer()


def check(request: pb.GenerateRequest, tokenizer: ByteTokenizer | None = TOK) -> GenerationRequest:
    return generation_request(request, SPEC, tokenizer, max_stop_strings=2)


def test_defaults_fill_in_the_limits_and_a_random_seed() -> None:
    a = check(build_request("hi"))
    b = check(build_request("hi"))
    assert a.prompt_ids == tuple(TOK.encode("hi"))
    assert a.max_tokens == 62
    assert a.sampling.top_p == 1.0
    assert a.sampling.temperature == 0.0
    assert a.sampling.seed != b.sampling.seed
    assert a.stop_at_eos


def test_explicit_fields_are_kept() -> None:
    r = check(
        build_request(
            [5, 6], max_tokens=3, temperature=0.5, top_p=0.9, top_k=4, seed=9, stop=["x"], stop_at_eos=False
        )
    )
    assert r.max_tokens == 3
    assert not r.stop_at_eos
    assert r.stops == ("x",)
    assert (r.sampling.temperature, r.sampling.top_k, r.sampling.seed) == (0.5, 4, 9)
    assert r.sampling.top_p == pytest.approx(0.9)
    assert check(build_request("a", add_bos=True)).prompt_ids[0] == 1


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (pb.GenerateRequest(), "prompt: set either"),
        (build_request("x" * 17), "prompt: 17 tokens is longer than the longest accepted prompt, 16"),
        (build_request("a", max_tokens=65), "max_tokens=65 is beyond the model's max length 64"),
        (build_request("a", temperature=float("inf")), "temperature=inf must be a finite number"),
        (build_request("a", top_p=float("nan")), "top_p=nan must be in (0, 1]"),
        (build_request("a", stop=["a", "b", "c"]), "stop: 3 stop strings given, at most 2"),
        (build_request("a", stop=[""]), "stop[0] is empty"),
        (build_request("a", stop=["x" * 300]), "stop[0] is 300 characters"),
        (build_request([-1]), "token_ids.ids[0]=-1 is outside the vocabulary [0, 260)"),
    ],
)
def test_bad_requests_name_the_field(request_: pb.GenerateRequest, message: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        check(request_)
    assert str(err.value).startswith(message)


def test_text_and_stops_need_a_tokenizer() -> None:
    with pytest.raises(InvalidRequestError, match="text: this worker has no tokenizer"):
        check(build_request("hi"), tokenizer=None)
    with pytest.raises(InvalidRequestError, match="stop: this worker has no tokenizer"):
        check(build_request([5], stop=["x"]), tokenizer=None)
    assert check(build_request([5]), tokenizer=None).prompt_ids == (5,)
