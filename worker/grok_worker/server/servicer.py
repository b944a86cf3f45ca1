"""The `grok.v1.GenerationService` servicer: a thin grpc.aio layer over the scheduler.

Data flow: request proto -> `validation.generation_request` (INVALID_ARGUMENT on bad fields) ->
`Scheduler.submit` (RESOURCE_EXHAUSTED when full, UNAVAILABLE unless SERVING) -> `TokenEvent`s ->
response protos. A client cancel or a passed deadline cancels the handler task; its `finally`
cancels the request, which frees the decode slot before the next step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from grok.v1 import generation_pb2 as pb
from grok.v1 import generation_pb2_grpc as pb_grpc
from grok_worker.engine.requests import (
    FinishReason,
    NotAcceptingError,
    QueueFullError,
    Timing,
    TokenEvent,
)
from grok_worker.engine.scheduler import RequestHandle, Scheduler
from grok_worker.engine.text import BOS_ID, Tokenizer
from grok_worker.server.state import LoadState, WorkerState
from grok_worker.server.validation import InvalidRequestError, check_token_ids, generation_request

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


class GenerationServicer(pb_grpc.GenerationServiceServicer):
    def __init__(self, state: WorkerState, info: pb.ModelInfo, max_stop_strings: int) -> None:
        self.state = state
        self.info = info
        self.max_stop_strings = max_stop_strings
        self.scheduler: Scheduler | None = None

    # ---- generation ---------------------------------------------------------------------------
    async def _submit(self, request: pb.GenerateRequest, context: Context) -> RequestHandle:
        scheduler = self.scheduler
        if scheduler is None or self.state.state is not LoadState.SERVING or not scheduler.accepting:
            self.state.metrics.finished("rejected_unavailable")
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"worker is {self.state.state.name} ({self.state.message}); retry on another replica or later",
            )
        assert scheduler is not None
        try:
            gen = generation_request(request, scheduler.spec, scheduler.tokenizer, self.max_stop_strings)
        except InvalidRequestError as exc:
            self.state.metrics.finished("rejected_invalid")
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            return scheduler.submit(gen)
        except QueueFullError as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except NotAcceptingError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        raise AssertionError("unreachable")  # context.abort always raises

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
    async def _require_tokenizer(self, context: Context) -> Tokenizer:
        """The loaded tokenizer, or abort with FAILED_PRECONDITION saying why there is none."""
        tokenizer = self.scheduler.tokenizer if self.scheduler else None
        if tokenizer is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "this worker has no tokenizer (model.tokenizer_path is empty)"
                if self.scheduler
                else f"worker is {self.state.state.name}; retry later",
            )
        assert tokenizer is not None
        return tokenizer

    async def Tokenize(  # noqa: N802 (gRPC method names)
        self, request: pb.TokenizeRequest, context: Context
    ) -> pb.TokenizeResponse:
        tokenizer = await self._require_tokenizer(context)
        ids = tokenizer.encode(request.text)
        if request.add_bos:
            ids = [BOS_ID, *ids]
        return pb.TokenizeResponse(token_ids=ids)

    async def Detokenize(  # noqa: N802 (gRPC method names)
        self, request: pb.DetokenizeRequest, context: Context
    ) -> pb.DetokenizeResponse:
        tokenizer = await self._require_tokenizer(context)
        try:
            check_token_ids(list(request.token_ids), tokenizer.vocab_size, "token_ids")
        except InvalidRequestError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.DetokenizeResponse(text=tokenizer.decode(list(request.token_ids)))

    async def GetModelInfo(  # noqa: N802 (gRPC method names)
        self, request: pb.GetModelInfoRequest, context: Context
    ) -> pb.ModelInfo:
        info = pb.ModelInfo()
        info.CopyFrom(self.info)
        info.load_state = getattr(pb, f"LOAD_STATE_{self.state.state.name}")
        info.load_progress = self.state.progress
        info.load_message = self.state.message
        return info
