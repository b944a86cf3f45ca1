"""Bearer-token checks in front of the gRPC and HTTP APIs.

Data flow: gRPC: `TokenInterceptor.intercept_service` reads the `authorization` metadata of every
call whose service is not exempt, asks the `TokenStore`, and either hands the call on or answers it
with a handler of the same shape that aborts UNAUTHENTICATED. HTTP: `token_middleware` does the same
with the `Authorization` header and answers 401 in OpenAI's error shape (with
`WWW-Authenticate: Bearer`). Exempt, so that probes and tooling work without a token: every method of
`grpc.health.v1.Health` and of server reflection (`grpc.reflection.v1` and `v1alpha`) over gRPC, and
`GET /health` over HTTP. Neither the presented token nor an accepted one is ever logged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from aiohttp import web
from aiohttp.typedefs import Middleware

from grok_worker.server.openai_schema import error_body
from grok_worker.server.tokens import TokenStore, bearer_token

log = logging.getLogger(__name__)

#: gRPC services callable without a token (health for probes and load balancers, reflection for tools).
EXEMPT_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }
)
#: HTTP paths callable without a token.
EXEMPT_PATHS = frozenset({"/health"})
UNAUTHENTICATED_MESSAGE = (
    "missing or invalid bearer token: send 'authorization: Bearer <token>' "
    "(grok --token, or $GROK_TOKEN) with a token from the worker's token Secret"
)

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"


def _service(method: str) -> str:
    """ "/grok.v1.GenerationService/Generate" -> "grok.v1.GenerationService"."""
    return method.lstrip("/").partition("/")[0]


def _metadata_token(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            return bearer_token(value if isinstance(value, str) else value.decode(errors="replace"))
    return None


def _refusal(handler: Handler) -> Handler:
    """A handler of the same streaming shape as `handler` that aborts UNAUTHENTICATED."""

    async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)

    async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
        yield None  # pragma: no cover (abort raises)

    def raw(data: bytes) -> bytes:
        return data  # never parse a request that will be refused

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(stream, raw)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(unary, raw)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(stream, raw)
    return grpc.unary_unary_rpc_method_handler(unary, raw)


class TokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self, tokens: TokenStore) -> None:
        self.tokens = tokens

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        handler = await continuation(handler_call_details)
        if handler is None or _service(handler_call_details.method) in EXEMPT_SERVICES:
            return handler
        if self.tokens.accepts(_metadata_token(handler_call_details.invocation_metadata)):
            return handler
        log.info("refused %s: missing or invalid bearer token", handler_call_details.method)
        return _refusal(handler)


WebHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def token_middleware(tokens: TokenStore) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: WebHandler) -> web.StreamResponse:
        if request.path in EXEMPT_PATHS or tokens.accepts(bearer_token(request.headers.get("Authorization"))):
            return await handler(request)
        log.info("refused %s %s: missing or invalid bearer token", request.method, request.path)
        body = error_body(UNAUTHENTICATED_MESSAGE, "invalid_request_error", None, "invalid_api_key")
        return web.json_response(body, status=401, headers={"WWW-Authenticate": "Bearer"})

    return check
