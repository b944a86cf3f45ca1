"""What both front doors (gRPC and the OpenAI-compatible HTTP API) share: admission of a request.

Data flow: a `grok.v1.GenerateRequest` (the HTTP API translates its JSON into one) ->
`Frontend.submit`: the worker must be SERVING (else `UnavailableError`); a text prompt longer than
any prompt of `max_prompt_len` tokens can be is refused at once, without tokenizing
(`InvalidRequestError`); validation and tokenizing run on a small thread pool, never on the event
loop, so a large prompt cannot stall the other requests' streams; `Scheduler.submit` queues it
(`QueueFullError` with a retry delay). Tokenize and Detokenize go through the same pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from grok.v1 import generation_pb2 as pb
from grok_worker.engine.requests import NotAcceptingError
from grok_worker.engine.scheduler import RequestHandle, Scheduler
from grok_worker.engine.text import Tokenizer
from grok_worker.model_config import BOS_ID
from grok_worker.server.state import LoadState, WorkerState
from grok_worker.server.validation import InvalidRequestError, check_token_ids, generation_request

T = TypeVar("T")

#: Threads that tokenize and detokenize (tokenizers release the GIL only in part: two are plenty).
TEXT_THREADS = 2


class UnavailableError(Exception):
    """The worker cannot take requests now (loading, draining, failed); the client should retry."""


class NoTokenizerError(Exception):
    """Tokenize/Detokenize on a worker without a tokenizer (FAILED_PRECONDITION: not worth a retry)."""


class Frontend:
    def __init__(self, state: WorkerState, max_stop_strings: int) -> None:
        self.state = state
        self.max_stop_strings = max_stop_strings
        self.scheduler: Scheduler | None = None
        self._pool = ThreadPoolExecutor(TEXT_THREADS, thread_name_prefix="text")

    def close(self) -> None:
        """Stop the text threads and let go of the scheduler. aiohttp keeps the HTTP API's handlers
        (and through them this Frontend) in a process-wide cache after the server stops; holding
        the scheduler would keep the engine and the gRPC servers alive into the interpreter's
        teardown, where grpc.aio's shutdown fails (grpc/grpc#38679)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.scheduler = None

    def serving(self) -> Scheduler:
        """The scheduler, or UnavailableError naming the worker's state."""
        scheduler = self.scheduler
        if scheduler is None or self.state.state is not LoadState.SERVING or not scheduler.accepting:
            raise UnavailableError(
                f"worker is {self.state.state.name} ({self.state.message}); retry on another replica or later"
            )
        return scheduler

    def tokenizer(self) -> Tokenizer:
        tokenizer = self.serving().tokenizer
        if tokenizer is None:
            raise NoTokenizerError("this worker has no tokenizer (model.tokenizer_path is empty)")
        return tokenizer

    def check_text_size(self, text: str, field: str = "prompt") -> None:
        """Refuse text that no prompt of max_prompt_len tokens can be, before tokenizing it."""
        scheduler = self.serving()
        tokenizer = scheduler.tokenizer
        if tokenizer is None:
            return
        limit = scheduler.spec.max_prompt_len * tokenizer.max_token_chars
        if len(text) > limit:
            raise InvalidRequestError(
                f"{field}: text of {len(text)} characters is longer than any prompt of "
                f"{scheduler.spec.max_prompt_len} tokens (ModelInfo.max_prompt_len) can be, at most "
                f"{limit} characters; shorten it"
            )

    async def _off_loop(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def submit(self, request: pb.GenerateRequest, api: str) -> RequestHandle:
        """Validate (off the event loop) and queue; raises UnavailableError, InvalidRequestError
        or QueueFullError. Rejections are counted in the metrics with the API's label."""
        metrics = self.state.metrics
        try:
            scheduler = self.serving()
            if request.WhichOneof("prompt") == "text":
                self.check_text_size(request.text)
            gen = await self._off_loop(
                generation_request, request, scheduler.spec, scheduler.tokenizer, self.max_stop_strings
            )
            scheduler = self.serving()  # the state may have changed while tokenizing
            return scheduler.submit(gen.labelled(api))
        except (UnavailableError, NotAcceptingError) as exc:
            metrics.finished("rejected_unavailable", api)
            raise UnavailableError(str(exc)) from None
        except InvalidRequestError:
            metrics.finished("rejected_invalid", api)
            raise

    async def tokenize(self, text: str, add_bos: bool) -> list[int]:
        tokenizer = self.tokenizer()
        self.check_text_size(text, "text")
        ids = await self._off_loop(tokenizer.encode, text)
        return [BOS_ID, *ids] if add_bos else ids

    async def detokenize(self, ids: Sequence[int]) -> str:
        tokenizer = self.tokenizer()
        check_token_ids(list(ids), tokenizer.vocab_size, "token_ids")
        return await self._off_loop(tokenizer.decode, list(ids))
