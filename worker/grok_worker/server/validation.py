"""Check a `grok.v1.GenerateRequest` against the engine's limits and build the engine's request.

Data flow: proto message + `EngineSpec` + tokenizer -> `GenerationRequest`, or `InvalidRequestError`
naming the field and the fix (the servicer turns it into INVALID_ARGUMENT). Pure: no I/O.
"""

from __future__ import annotations

import math
import secrets

from grok.v1 import generation_pb2 as pb
from grok_worker.engine.api import EngineSpec, SamplingParams
from grok_worker.engine.requests import GenerationRequest
from grok_worker.engine.text import Tokenizer
from grok_worker.model_config import BOS_ID

#: Longest stop string accepted, in characters.
MAX_STOP_CHARS = 256


class InvalidRequestError(ValueError):
    """A request field is wrong; the message names it and what is allowed."""


def prompt_ids(request: pb.GenerateRequest, spec: EngineSpec, tokenizer: Tokenizer | None) -> tuple[int, ...]:
    which = request.WhichOneof("prompt")
    if which is None:
        raise InvalidRequestError("prompt: set either prompt text (field `text`) or `token_ids`")
    if which == "text":
        if not request.text:
            raise InvalidRequestError("text: the prompt is empty; send some text or token_ids")
        if tokenizer is None:
            raise InvalidRequestError(
                "text: this worker has no tokenizer configured; send the prompt as token_ids"
            )
        ids = tokenizer.encode(request.text)
        if request.add_bos:
            ids = [BOS_ID, *ids]
        if not ids:
            raise InvalidRequestError("text: the prompt tokenizes to no tokens")
        check_token_ids(ids, spec.vocab_size, "text (as token ids)")
    else:
        ids = list(request.token_ids.ids)
        if not ids:
            raise InvalidRequestError("token_ids.ids: the prompt is empty; send at least one token id")
        check_token_ids(ids, spec.vocab_size, "token_ids.ids")
    if len(ids) > spec.max_prompt_len:
        raise InvalidRequestError(
            f"prompt: {len(ids)} tokens is longer than the longest accepted prompt, {spec.max_prompt_len} "
            "tokens (ModelInfo.max_prompt_len); shorten it"
        )
    return tuple(ids)


def check_token_ids(ids: list[int], vocab_size: int, field: str) -> None:
    for i, token in enumerate(ids):
        if not 0 <= token < vocab_size:
            raise InvalidRequestError(f"{field}[{i}]={token} is outside the vocabulary [0, {vocab_size})")


def generation_request(
    request: pb.GenerateRequest, spec: EngineSpec, tokenizer: Tokenizer | None, max_stop_strings: int
) -> GenerationRequest:
    ids = prompt_ids(request, spec, tokenizer)
    if request.HasField("max_tokens"):
        if request.max_tokens <= 0:
            raise InvalidRequestError(
                f"max_tokens={request.max_tokens} must be > 0 (or unset for the model's limit)"
            )
        if request.max_tokens > spec.max_seq_len:
            raise InvalidRequestError(
                f"max_tokens={request.max_tokens} is beyond the model's max length {spec.max_seq_len} "
                "(ModelInfo.max_seq_len)"
            )
        max_tokens = request.max_tokens
    else:
        max_tokens = spec.max_seq_len - len(ids)
    temperature = request.temperature
    if not math.isfinite(temperature) or temperature < 0:
        raise InvalidRequestError(f"temperature={temperature} must be a finite number >= 0 (0 = greedy)")
    top_p = request.top_p if request.HasField("top_p") else 1.0
    if not (0.0 < top_p <= 1.0):
        raise InvalidRequestError(f"top_p={top_p} must be in (0, 1] (or unset for 1)")
    if request.top_k < 0:
        raise InvalidRequestError(f"top_k={request.top_k} must be >= 0 (0 = no limit)")
    stops = tuple(request.stop)
    if len(stops) > max_stop_strings:
        raise InvalidRequestError(
            f"stop: {len(stops)} stop strings given, at most {max_stop_strings} allowed "
            "(serving.max_stop_strings)"
        )
    for i, stop in enumerate(stops):
        if not stop:
            raise InvalidRequestError(f"stop[{i}] is empty; remove it")
        if len(stop) > MAX_STOP_CHARS:
            raise InvalidRequestError(
                f"stop[{i}] is {len(stop)} characters; at most {MAX_STOP_CHARS} allowed"
            )
    if stops and tokenizer is None:
        raise InvalidRequestError("stop: this worker has no tokenizer, so stop strings cannot be matched")
    seed = request.seed if request.HasField("seed") else secrets.randbits(64)
    return GenerationRequest(
        prompt_ids=ids,
        max_tokens=max_tokens,
        sampling=SamplingParams(temperature=temperature, top_p=top_p, top_k=request.top_k, seed=seed),
        stops=stops,
        stop_at_eos=request.stop_at_eos if request.HasField("stop_at_eos") else True,
    )
