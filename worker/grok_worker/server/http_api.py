"""The OpenAI-compatible HTTP API (aiohttp), beside gRPC on its own port, sharing its engine.

Routes: `POST /v1/completions`, `POST /v1/chat/completions` (unary JSON, or server-sent events
ending in `data: [DONE]` with `"stream": true`), `GET /v1/models`, `GET /v1/models/{id}`,
`GET /health` (200 when SERVING, else 503 naming the state).

Data flow: JSON body -> `openai_schema` (pydantic; 400 naming the field) -> a `grok.v1.GenerateRequest`
-> `Frontend.submit(.., "http")`, the same admission, validation, limits and scheduler as gRPC ->
`TokenEvent`s -> OpenAI JSON (one SSE event per generated token when streaming). Errors use OpenAI's
shape `{"error": {"message", "type", "param", "code"}}`: 400 invalid, 404 unknown model or path, 413
body over 4 MiB (gRPC's message limit), 429 queue full (with Retry-After), 503 loading, draining,
failed or shut down mid-request. A client that disconnects cancels its request (aiohttp cancels the
handler; its `finally` frees the slot before the next step).
"""

from __future__ import annotations

import json
import logging
import math
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from grok.v1 import generation_pb2 as pb
from grok_worker.engine.requests import FinishReason, QueueFullError, TokenEvent
from grok_worker.engine.scheduler import RequestHandle
from grok_worker.server.auth import token_middleware
from grok_worker.server.frontend import Frontend, NoTokenizerError, UnavailableError
from grok_worker.server.listen import listen
from grok_worker.server.openai_schema import (
    BodyError,
    ChatBody,
    CompletionBody,
    Reply,
    chat_request,
    completion_request,
    error_body,
    finish_reason,
    parse_body,
)
from grok_worker.server.state import LoadState, WorkerState
from grok_worker.server.tokens import TokenStore
from grok_worker.server.validation import InvalidRequestError

log = logging.getLogger(__name__)

#: Largest request body, as gRPC's default largest message.
MAX_BODY_BYTES = 4 * 1024 * 1024
_TYPES = {
    400: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(
    status: int, message: str, param: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    kind = _TYPES.get(status, "server_error")
    return web.json_response(error_body(message, kind, param, str(status)), status=status, headers=headers)


def _prompt_param(message: str) -> str | None:
    """Validation messages name gRPC fields; the prompt is `prompt` (or `messages`) over HTTP."""
    field = message.split(":", 1)[0].split("=", 1)[0].split("[", 1)[0].strip()
    if field in ("text", "token_ids.ids", "prompt", "text (as token ids)"):
        return "prompt"
    return field or None


def error_for(exc: Exception) -> web.Response:
    """The HTTP answer for a front-door error (the same conditions as the gRPC status codes)."""
    if isinstance(exc, BodyError):
        return error_response(400, str(exc), exc.param)
    if isinstance(exc, InvalidRequestError):
        return error_response(400, str(exc), _prompt_param(str(exc)))
    if isinstance(exc, NoTokenizerError):
        return error_response(400, str(exc))
    if isinstance(exc, QueueFullError):
        retry = str(max(1, math.ceil(exc.retry_after)))
        return error_response(429, str(exc), headers={"Retry-After": retry})
    if isinstance(exc, UnavailableError):
        return error_response(503, str(exc))
    raise exc


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own errors (404, 405, 413...) in OpenAI's error shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(
            exc.status,
            exc.reason
            if exc.status != 413
            else (f"the request body is larger than {MAX_BODY_BYTES} bytes; shorten the prompt"),
        )


class HttpApi:
    def __init__(
        self, state: WorkerState, info: pb.ModelInfo, frontend: Frontend, tokens: TokenStore | None = None
    ) -> None:
        self.state = state
        self.info = info
        self.frontend = frontend
        self.started = int(time.time())
        middlewares: list[Middleware] = [_errors]
        if tokens is not None:
            middlewares.insert(0, token_middleware(tokens))
        self.app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=middlewares)
        self.app.add_routes(
            [
                web.post("/v1/completions", self.completions),
                web.post("/v1/chat/completions", self.chat_completions),
                web.get("/v1/models", self.models),
                web.get("/v1/models/{model}", self.model),
                web.get("/health", self.health),
            ]
        )
        self._runner: web.AppRunner | None = None

    # ---- lifecycle ----------------------------------------------------------------------------
    async def start(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> int:
        """Bind and serve (HTTPS with `tls`); returns the port (port 0 picks a free one)."""
        sock = listen(host, port)
        runner = web.AppRunner(self.app, handler_cancellation=True, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock, ssl_context=tls).start()
        self._runner = runner
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- info ---------------------------------------------------------------------------------
    @property
    def model_id(self) -> str:
        return self.info.preset or "grok"

    def _model_card(self) -> dict[str, Any]:
        return {"id": self.model_id, "object": "model", "created": self.started, "owned_by": "grok-operator"}

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [self._model_card()]})

    async def model(self, request: web.Request) -> web.Response:
        if request.match_info["model"] != self.model_id:
            return self._unknown_model(request.match_info["model"])
        return web.json_response(self._model_card())

    def _unknown_model(self, name: str) -> web.Response:
        return error_response(
            404, f"model {name!r} does not exist; this worker serves {self.model_id!r}", "model"
        )

    async def health(self, request: web.Request) -> web.Response:
        serving = self.state.state is LoadState.SERVING
        body = {
            "status": self.state.state.name,
            "message": self.state.message,
            "progress": self.state.progress,
        }
        return web.json_response(body, status=200 if serving else 503)

    # ---- generation ---------------------------------------------------------------------------
    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        try:
            data = await self._json(request)
            body: CompletionBody | ChatBody = parse_body(ChatBody if chat else CompletionBody, data)
            if body.model is not None and body.model != self.model_id:
                return self._unknown_model(body.model)
            grpc_request = chat_request(body) if isinstance(body, ChatBody) else completion_request(body)
            handle = await self.frontend.submit(grpc_request, "http")
        except (BodyError, InvalidRequestError, QueueFullError, UnavailableError, NoTokenizerError) as exc:
            return error_for(exc)
        logprobs = body.logprobs is not None if isinstance(body, CompletionBody) else body.logprobs
        reply = Reply(chat, self.model_id, bool(logprobs))
        try:
            if body.stream:
                return await self._stream(request, handle, reply, body.include_usage())
            return await self._whole(handle, reply)
        finally:
            handle.cancel()

    @staticmethod
    async def _json(request: web.Request) -> Any:
        raw = await request.read()
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise BodyError(f"the request body is not valid JSON: {err}") from None

    def _token_text(self, token: int) -> str:
        tokenizer = self.frontend.scheduler.tokenizer if self.frontend.scheduler else None
        if tokenizer is None or not 0 <= token < tokenizer.vocab_size:
            return f"token_id:{token}"
        return tokenizer.decode([token])

    async def _whole(self, handle: RequestHandle, reply: Reply) -> web.Response:
        text, tokens, logprobs = "", [], []
        async for event in handle.events():
            if event.finish is FinishReason.ERROR:
                return error_response(503, event.error or "the engine failed")
            if event.token is not None:
                tokens.append(self._token_text(event.token))
                logprobs.append(event.logprob)
            text += event.text
            if event.finish is not None:
                prompt = len(handle.request.prompt_ids)
                return web.json_response(
                    reply.whole(text, tokens, logprobs, finish_reason(event), prompt, event.completion_tokens)
                )
        return error_response(503, "the request ended without a result")

    async def _stream(
        self, request: web.Request, handle: RequestHandle, reply: Reply, include_usage: bool
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        first, offset = True, 0
        async for event in handle.events():
            if event.finish is FinishReason.ERROR:
                error = error_body(event.error or "the engine failed", _TYPES[503], None, "503")
                await response.write(_sse(error))
                break
            chunk = self._chunk(reply, event, first, offset)
            if chunk is not None:
                await response.write(_sse(chunk))
                first = False
                offset += len(event.text)
            if event.finish is not None:
                if include_usage:
                    prompt = len(handle.request.prompt_ids)
                    await response.write(_sse(reply.usage_chunk(prompt, event.completion_tokens)))
                break
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    def _chunk(self, reply: Reply, event: TokenEvent, first: bool, offset: int) -> dict[str, Any] | None:
        """The SSE chunk for one event; None when it carries nothing to send (text held back)."""
        finish = finish_reason(event)
        has_token = event.token is not None and reply.logprobs
        if not (event.text or finish or has_token or (first and reply.chat)):
            return None
        tokens = [self._token_text(event.token)] if has_token and event.token is not None else []
        logprobs = [event.logprob] if tokens else []
        return reply.chunk(event.text, tokens, logprobs, offset, finish, first)


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
