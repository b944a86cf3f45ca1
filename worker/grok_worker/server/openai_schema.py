"""The OpenAI-compatible request bodies, their translation to `grok.v1.GenerateRequest`, and replies.

Data flow: JSON body -> pydantic model (`CompletionBody`, `ChatBody`; errors name the field) ->
`to_generate_request` -> the same `grok.v1.GenerateRequest` a gRPC client would send, so both front
doors share one validation (`server.validation`) and one set of limits. Generated `TokenEvent`s come
back as OpenAI JSON objects (`completion_chunk`, `chat_chunk`, ...). Pure: no I/O.

Chat prompt template: Grok-1 is a base model, not tuned for chat, so `/v1/chat/completions` renders
the conversation as plain text the base model can continue,

    System: <system message>\\n\\nUser: <user message>\\n\\nAssistant: <reply>\\n\\n...Assistant:

and stops at the next "\\n\\nUser:" (added to the request's stop strings), so the reply is one turn.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from grok.v1 import generation_pb2 as pb
from grok_worker.engine.requests import FinishReason, TokenEvent

#: Largest value of the int32 fields of grok.v1.GenerateRequest (token ids, max_tokens, top_k).
INT32_MAX = 2**31 - 1
#: OpenAI's default for /v1/completions when max_tokens is absent.
DEFAULT_COMPLETION_TOKENS = 16
CHAT_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}
CHAT_TURN_STOP = "\n\nUser:"
_FINISH = {FinishReason.LENGTH: "length", FinishReason.STOP: "stop", FinishReason.EOS: "stop"}


class BodyError(ValueError):
    """A request body field is wrong; `param` names it (OpenAI's error `param`)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class _Body(BaseModel):
    """Fields both endpoints take. Unknown fields are ignored, as OpenAI's SDKs add new ones freely."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=-INT32_MAX, le=INT32_MAX)
    temperature: float = 1.0
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int = 1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    #: Extensions (as vLLM names them): top-k truncation and ignoring the end-of-sequence token.
    top_k: int = Field(default=0, ge=-INT32_MAX, le=INT32_MAX)
    ignore_eos: bool = False

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))

    def check_supported(self) -> None:
        if self.n != 1:
            raise BodyError(f"n={self.n}: only n=1 is supported; send several requests instead", "n")
        if self.presence_penalty or self.frequency_penalty:
            raise BodyError(
                "presence_penalty and frequency_penalty are not supported; leave them at 0",
                "presence_penalty" if self.presence_penalty else "frequency_penalty",
            )
        if self.logit_bias:
            raise BodyError("logit_bias is not supported; leave it out", "logit_bias")
        if self.seed is not None and not 0 <= self.seed < 2**64:
            raise BodyError(f"seed={self.seed} must be in [0, 2^64)", "seed")


class CompletionBody(_Body):
    prompt: str | list[int] | list[str] | list[list[int]]
    logprobs: int | None = None
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None
    add_bos: bool = False

    def single_prompt(self) -> str | list[int]:
        prompt: object = self.prompt
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
            if len(prompt) != 1:
                raise BodyError(
                    f"prompt: {len(prompt)} prompts in one request; send one prompt per request", "prompt"
                )
            prompt = prompt[0]
        if isinstance(prompt, str):
            return prompt
        assert isinstance(prompt, list)
        ids = [token for token in prompt if isinstance(token, int)]
        for i, token in enumerate(ids):
            if not 0 <= token <= INT32_MAX:
                raise BodyError(f"prompt[{i}]={token} is not a token id", "prompt")
        return ids

    def check_supported(self) -> None:
        super().check_supported()
        if self.echo:
            raise BodyError("echo=true is not supported; the reply holds only the completion", "echo")
        if self.suffix:
            raise BodyError("suffix is not supported (no fill-in-the-middle)", "suffix")
        if self.best_of not in (None, 1):
            raise BodyError(f"best_of={self.best_of}: only 1 is supported", "best_of")
        if self.logprobs is not None and self.logprobs != 0:
            raise BodyError(
                f"logprobs={self.logprobs}: only logprobs=0 is supported (the sampled tokens' "
                "log-probabilities; alternatives are not computed)",
                "logprobs",
            )


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        parts = []
        for part in self.content:
            if part.get("type") != "text":
                raise BodyError(
                    f"messages: content of type {part.get('type')!r} is not supported; send text", "messages"
                )
            parts.append(str(part.get("text", "")))
        return "".join(parts)


class ChatBody(_Body):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=-INT32_MAX, le=INT32_MAX)
    logprobs: bool = False
    top_logprobs: int | None = None

    def check_supported(self) -> None:
        super().check_supported()
        if self.top_logprobs:
            raise BodyError(
                f"top_logprobs={self.top_logprobs}: only 0 is supported (alternatives are not computed)",
                "top_logprobs",
            )


def parse_body(model: type[_Body], data: Any) -> Any:
    """A body model from decoded JSON, or BodyError naming the first wrong field."""
    if not isinstance(data, dict):
        raise BodyError("the request body must be a JSON object")
    try:
        body = model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise BodyError(f"{field}: {first['msg']}", field) from None
    body.check_supported()
    return body


def chat_prompt(messages: list[ChatMessage]) -> str:
    """The conversation as text for a base model (see the module docstring)."""
    turns = []
    for message in messages:
        role = CHAT_ROLES["system" if message.role == "developer" else message.role]
        turns.append(f"{role}: {message.text()}")
    return "\n\n".join([*turns, "Assistant:"])


def _common(request: pb.GenerateRequest, body: _Body, max_tokens: int | None) -> pb.GenerateRequest:
    if max_tokens is not None:
        request.max_tokens = max_tokens
    request.temperature = body.temperature
    if body.top_p is not None:
        request.top_p = body.top_p
    request.top_k = body.top_k
    if body.seed is not None:
        request.seed = body.seed
    request.stop.extend(body.stops())
    request.stop_at_eos = not body.ignore_eos
    return request


def completion_request(body: CompletionBody) -> pb.GenerateRequest:
    request = pb.GenerateRequest(add_bos=body.add_bos)
    prompt = body.single_prompt()
    if isinstance(prompt, str):
        request.text = prompt
    else:
        request.token_ids.ids.extend(prompt)
    max_tokens = DEFAULT_COMPLETION_TOKENS if body.max_tokens is None else body.max_tokens
    return _common(request, body, max_tokens)


def chat_request(body: ChatBody) -> pb.GenerateRequest:
    request = pb.GenerateRequest(text=chat_prompt(body.messages), add_bos=True)
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    request = _common(request, body, max_tokens)
    request.stop.append(CHAT_TURN_STOP)
    return request


def request_id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def finish_reason(event: TokenEvent) -> str | None:
    return _FINISH.get(event.finish) if event.finish is not None else None


class Reply:
    """Builds one request's reply objects (completion or chat, whole or streamed)."""

    def __init__(self, chat: bool, model: str, logprobs: bool) -> None:
        self.chat = chat
        self.model = model
        self.logprobs = logprobs
        self.id = request_id("chatcmpl" if chat else "cmpl")
        self.created = int(time.time())

    def _envelope(self, stream: bool) -> dict[str, Any]:
        kind = ("chat.completion.chunk" if stream else "chat.completion") if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def _logprobs(self, tokens: list[str], logprobs: list[float], offset: int) -> dict[str, Any] | None:
        if not self.logprobs:
            return None
        if self.chat:
            return {
                "content": [
                    {"token": t, "logprob": lp, "bytes": list(t.encode()), "top_logprobs": []}
                    for t, lp in zip(tokens, logprobs, strict=True)
                ]
            }
        offsets, at = [], offset
        for t in tokens:
            offsets.append(at)
            at += len(t)
        return {"tokens": tokens, "token_logprobs": logprobs, "top_logprobs": None, "text_offset": offsets}

    def chunk(
        self,
        text: str,
        tokens: list[str],
        logprobs: list[float],
        offset: int,
        finish: str | None,
        first: bool,
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "logprobs": self._logprobs(tokens, logprobs, offset)}
        if self.chat:
            delta: dict[str, str] = {"role": "assistant"} if first else {}
            if text or first:
                delta["content"] = text
            choice["delta"] = delta
        else:
            choice["text"] = text
        choice["finish_reason"] = finish
        return {**self._envelope(True), "choices": [choice]}

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        return {**self._envelope(True), "choices": [], "usage": usage(prompt_tokens, completion_tokens)}

    def whole(
        self,
        text: str,
        tokens: list[str],
        logprobs: list[float],
        finish: str | None,
        prompt_tokens: int,
        completion_tokens: int,
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "logprobs": self._logprobs(tokens, logprobs, 0)}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        choice["finish_reason"] = finish
        return {
            **self._envelope(False),
            "choices": [choice],
            "usage": usage(prompt_tokens, completion_tokens),
        }


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
