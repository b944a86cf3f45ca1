"""Small sync and asyncio clients over the generated `grok.v1` stubs.

Data flow: keyword arguments -> `build_request` -> a `GenerateRequest` -> the stub over one
channel (TLS and a bearer token sent with every call when a `ClientSecurity` says so). Errors surface as `grpc.RpcError` (sync) / `grpc.aio.AioRpcError` (async) carrying the
server's status code and message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from types import TracebackType
from typing import Any

from grpc_health.v1 import health_pb2, health_pb2_grpc

from grok.v1 import generation_pb2 as pb
from grok.v1 import generation_pb2_grpc as pb_grpc
from grok_worker.client.security import ClientSecurity, open_aio_channel, open_channel

Prompt = str | Sequence[int]


def build_request(
    prompt: Prompt,
    *,
    max_tokens: int | None = None,
    temperature: float = 0.0,
    top_p: float | None = None,
    top_k: int = 0,
    seed: int | None = None,
    stop: Sequence[str] = (),
    return_token_ids: bool = True,
    return_logprobs: bool = False,
    add_bos: bool = False,
    stop_at_eos: bool | None = None,
) -> pb.GenerateRequest:
    """A GenerateRequest from Python values; a str prompt is text, a sequence of ints is token ids."""
    request = pb.GenerateRequest(
        temperature=temperature,
        top_k=top_k,
        stop=list(stop),
        return_token_ids=return_token_ids,
        return_logprobs=return_logprobs,
        add_bos=add_bos,
    )
    if isinstance(prompt, str):
        request.text = prompt
    else:
        request.token_ids.ids.extend(prompt)
    if max_tokens is not None:
        request.max_tokens = max_tokens
    if top_p is not None:
        request.top_p = top_p
    if seed is not None:
        request.seed = seed
    if stop_at_eos is not None:
        request.stop_at_eos = stop_at_eos
    return request


def _status_name(status: int) -> str:
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(status))


class GrokClient:
    """Blocking client; use as a context manager or call `close()`."""

    def __init__(
        self, target: str, timeout: float | None = None, security: ClientSecurity | None = None
    ) -> None:
        self.channel = open_channel(target, security)
        self.metadata = security.metadata if security is not None else ()
        self.stub = pb_grpc.GenerationServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)
        self.timeout = timeout

    def generate(self, prompt: Prompt, **params: Any) -> pb.GenerateResponse:
        response: pb.GenerateResponse = self.stub.Generate(
            build_request(prompt, **params), timeout=self.timeout, metadata=self.metadata
        )
        return response

    def generate_stream(self, prompt: Prompt, **params: Any) -> Iterator[pb.GenerateStreamResponse]:
        """Yields one message per token; breaking out of the loop cancels the request."""
        call = self.stub.GenerateStream(
            build_request(prompt, **params), timeout=self.timeout, metadata=self.metadata
        )
        try:
            yield from call
        finally:
            call.cancel()

    def tokenize(self, text: str, add_bos: bool = False) -> list[int]:
        response = self.stub.Tokenize(
            pb.TokenizeRequest(text=text, add_bos=add_bos), timeout=self.timeout, metadata=self.metadata
        )
        return list(response.token_ids)

    def detokenize(self, token_ids: Sequence[int]) -> str:
        response = self.stub.Detokenize(
            pb.DetokenizeRequest(token_ids=list(token_ids)), timeout=self.timeout, metadata=self.metadata
        )
        return str(response.text)

    def info(self) -> pb.ModelInfo:
        info: pb.ModelInfo = self.stub.GetModelInfo(
            pb.GetModelInfoRequest(), timeout=self.timeout, metadata=self.metadata
        )
        return info

    def health(self, service: str = "") -> str:
        """ "SERVING", "NOT_SERVING", ... of the standard grpc.health.v1 service."""
        response = self.health_stub.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=self.timeout, metadata=self.metadata
        )
        return _status_name(response.status)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> GrokClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncGrokClient:
    """asyncio client; use as an async context manager or await `close()`."""

    def __init__(
        self, target: str, timeout: float | None = None, security: ClientSecurity | None = None
    ) -> None:
        self.channel = open_aio_channel(target, security)
        self.metadata = security.metadata if security is not None else ()
        self.stub = pb_grpc.GenerationServiceStub(self.channel)  # type: ignore[no-untyped-call]
        self.health_stub = health_pb2_grpc.HealthStub(self.channel)
        self.timeout = timeout

    async def generate(self, prompt: Prompt, **params: Any) -> pb.GenerateResponse:
        response: pb.GenerateResponse = await self.stub.Generate(
            build_request(prompt, **params),
            timeout=self.timeout,
            metadata=self.metadata,
        )
        return response

    async def generate_stream(
        self, prompt: Prompt, **params: Any
    ) -> AsyncIterator[pb.GenerateStreamResponse]:
        call = self.stub.GenerateStream(
            build_request(prompt, **params), timeout=self.timeout, metadata=self.metadata
        )
        try:
            async for message in call:
                yield message
        finally:
            call.cancel()

    async def tokenize(self, text: str, add_bos: bool = False) -> list[int]:
        response = await self.stub.Tokenize(
            pb.TokenizeRequest(text=text, add_bos=add_bos), timeout=self.timeout, metadata=self.metadata
        )
        return list(response.token_ids)

    async def detokenize(self, token_ids: Sequence[int]) -> str:
        response = await self.stub.Detokenize(
            pb.DetokenizeRequest(token_ids=list(token_ids)), timeout=self.timeout, metadata=self.metadata
        )
        return str(response.text)

    async def info(self) -> pb.ModelInfo:
        info: pb.ModelInfo = await self.stub.GetModelInfo(
            pb.GetModelInfoRequest(), timeout=self.timeout, metadata=self.metadata
        )
        return info

    async def health(self, service: str = "") -> str:
        response = await self.health_stub.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=self.timeout, metadata=self.metadata
        )
        return _status_name(response.status)

    async def close(self) -> None:
        await self.channel.close(None)

    async def __aenter__(self) -> AsyncGrokClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
