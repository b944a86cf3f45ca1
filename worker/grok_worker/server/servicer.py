"""The `grok.v1.GenerationService` servicer: a thin grpc.aio layer over the shared front door.

Data flow: request proto -> `Frontend.submit` (the same admission as the HTTP API: UNAVAILABLE unless
SERVING, INVALID_ARGUMENT on bad fields, validation and tokenizing off the event loop,
RESOURCE_EXHAUSTED with a google.rpc.RetryInfo delay when the queue is full) -> `TokenEvent`s ->
response protos. A client cancel or a passed deadline cancels the handler task; its `finally`
cancels the request, which frees the decode slot before the next step. Malformed request bytes never
reach these methods as messages (`wire.add_generation_service` answers INVALID_ARGUMENT).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc

from grok.v1 import generation_pb2 as pb
from grok.v1 import generation_pb2_grpc as pb_grpc
from grok_worker.engine.requests import FinishReason, QueueFullError, Timing, TokenEvent
from grok_worker.engine.scheduler import RequestHandle
from grok_worker.server.frontend import Frontend, NoTokenizerError, UnavailableError
from grok_worker.server.state import WorkerState
from grok_worker.server.validation import InvalidRequestError
from grok_worker.server.wire import retry_details

#: The servicer context of any of our methods (request and response types vary).
Context = grpc.aio.ServicerContext[Any, Any]

_FINISH = {
    FinishReason.LENGTH: pb.FINISH_REASON_LENGTH,
    FinishReason.STOP: pb.FINISH_REASON_STOP,
    FinishReason.EOS: pb.FINISH_REASON_EOS,
    FinishReason.CANCELLED: pb.FINISH_REASON_CANCELLED,
}


def timing_pb(timing: Timing | None) -> pb.Timing:
    if timing is None:
        return pb.Timing()
    return pb.Timing(
        queue_seconds=timing.queue_seconds,
        time_to_first_token_seconds=timing.time_to_first_token_seconds,
        total_seconds=timing.total_seconds,
        decode_tokens_per_second=timing.decode_tokens_per_second,
    )


async def abort_for(exc: Exception, context: Context) -> NoReturn:
    """Answer the client with the status code a front-door error stands for."""
    if isinstance(exc, QueueFullError):
        trailer = retry_details(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), exc.retry_after)
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), trailing_metadata=trailer)
    if isinstance(exc, InvalidRequestError):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    if isinstance(exc, UnavailableError):
        await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
    if isinstance(exc, NoTokenizerError):
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
    raise exc


class GenerationServicer(pb_grpc.GenerationServiceServicer):
    def __init__(self, state: WorkerState, info: pb.ModelInfo, frontend: Frontend) -> None:
        self.state = state
        self.info = info
        self.frontend = frontend

    # ---- generation ---------------------------------------------------------------------------
    async def _submit(self, request: pb.GenerateRequest, context: Context) -> RequestHandle:
        try:
            return await self.frontend.submit(request, "grpc")
        except (QueueFullError, InvalidRequestError, UnavailableError) as exc:
            await abort_for(exc, context)

    @staticmethod
    async def _check_error(event: TokenEvent, context: Context) -> None:
        if event.finish is FinishReason.ERROR:
            await context.abort(grpc.StatusCode.UNAVAILABLE, event.error or "the engine failed")

    async def Generate(  # noqa: N802 (gRPC method names)
        self, request: pb.GenerateRequest, context: Context
    ) -> pb.GenerateResponse:
        handle = await self._submit(request, context)
        response = pb.GenerateResponse()
        try:
            async for event in handle.events():
                await self._check_error(event, context)
                if event.token is not None:
                    if request.return_token_ids:
                        response.token_ids.append(event.token)
                    if request.return_logprobs:
                        response.logprobs.append(event.logprob)
                response.text += event.text
                if event.finish is not None:
                    response.finish_reason = _FINISH[event.finish]
                    response.matched_stop = event.matched_stop
                    response.usage.CopyFrom(
                        pb.Usage(
                            prompt_tokens=len(handle.request.prompt_ids),
                            completion_tokens=event.completion_tokens,
                        )
                    )
                    response.timing.CopyFrom(timing_pb(event.timing))
        finally:
            handle.cancel()
        return response

    async def GenerateStream(  # noqa: N802 (gRPC method names)
        self, request: pb.GenerateRequest, context: Context
    ) -> AsyncIterator[pb.GenerateStreamResponse]:
        handle = await self._submit(request, context)
        try:
            async for event in handle.events():
                await self._check_error(event, context)
                message = pb.GenerateStreamResponse(text=event.text)
                if event.token is not None:
                    if request.return_token_ids:
                        message.token_ids.append(event.token)
                    if request.return_logprobs:
                        message.logprobs.append(event.logprob)
                if event.finish is not None:
                    message.finish_reason = _FINISH[event.finish]
                    message.matched_stop = event.matched_stop
                    message.usage.CopyFrom(
                        pb.Usage(
                            prompt_tokens=len(handle.request.prompt_ids),
                            completion_tokens=event.completion_tokens,
                        )
                    )
                    message.timing.CopyFrom(timing_pb(event.timing))
                yield message
        finally:
            handle.cancel()

    # ---- text and info ------------------------------------------------------------------------
    async def Tokenize(  # noqa: N802 (gRPC method names)
        self, request: pb.TokenizeRequest, context: Context
    ) -> pb.TokenizeResponse:
        try:
            ids = await self.frontend.tokenize(request.text, request.add_bos)
        except (InvalidRequestError, UnavailableError, NoTokenizerError) as exc:
            await abort_for(exc, context)
        return pb.TokenizeResponse(token_ids=ids)

    async def Detokenize(  # noqa: N802 (gRPC method names)
        self, request: pb.DetokenizeRequest, context: Context
    ) -> pb.DetokenizeResponse:
        try:
            text = await self.frontend.detokenize(list(request.token_ids))
        except (InvalidRequestError, UnavailableError, NoTokenizerError) as exc:
            await abort_for(exc, context)
        return pb.DetokenizeResponse(text=text)

    async def GetModelInfo(  # noqa: N802 (gRPC method names)
        self, request: pb.GetModelInfoRequest, context: Context
    ) -> pb.ModelInfo:
        info = pb.ModelInfo()
        info.CopyFrom(self.info)
        info.load_state = getattr(pb, f"LOAD_STATE_{self.state.state.name}")
        info.load_progress = self.state.progress
        info.load_message = self.state.message
        return info
