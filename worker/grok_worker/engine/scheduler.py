"""Continuous batching: a bounded queue, fixed decode slots, one engine thread.

Data flow: `Scheduler.submit` (on the asyncio loop) puts a request in the waiting queue and returns
a `RequestHandle`. The engine thread loops: free the slots of cancelled requests; admit waiting
requests into free slots (prefill -> insert, which yields each one's first token); run one batched
`decode` for all slots; turn each slot's token into a `TokenEvent` (detokenize, stop strings, EOS,
max tokens, model max length) and free the slots of finished requests. Events go back to the
asyncio loop in one `call_soon_threadsafe` per step, into each handle's queue. Device work never
runs on the event loop, and new requests join between steps.

Prefill work per iteration is bounded by the engine's `prefill_chunk` (when set): short prompts are
admitted while their buckets fit in one chunk's tokens, and a longer prompt reserves a slot and is
prefilled one chunk per iteration, in arrival order and one at a time. While other slots decode,
the chunk rides in their decode step (`Engine.decode_with_chunk`: one forward pass, the weights
read once), so the running streams' next token is delayed only by the chunk's own compute.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from grok_worker.engine.api import Engine, Prefix, SampledToken, bucket_for
from grok_worker.engine.requests import (
    FinishReason,
    GenerationRequest,
    NotAcceptingError,
    QueueFullError,
    Timing,
    TokenEvent,
)
from grok_worker.engine.text import TextStream, Tokenizer
from grok_worker.metrics import ServingMetrics

log = logging.getLogger(__name__)


class RequestHandle:
    """The asyncio side of one request: iterate its events; `cancel()` frees its slot."""

    def __init__(self, scheduler: Scheduler, request_id: int, request: GenerationRequest) -> None:
        self.id = request_id
        self.request = request
        self._scheduler = scheduler
        self._queue: asyncio.Queue[TokenEvent] = asyncio.Queue()
        self.done = False

    def _put(self, event: TokenEvent) -> None:
        if self.done:
            return
        if event.finish is not None:
            self.done = True
        self._queue.put_nowait(event)

    async def events(self) -> AsyncIterator[TokenEvent]:
        while True:
            event = await self._queue.get()
            yield event
            if event.finish is not None:
                return

    def cancel(self) -> None:
        if not self.done:
            self._scheduler.cancel(self)


@dataclass
class _Active:
    """Engine-thread state of a request that holds (or is about to hold) a slot."""

    handle: RequestHandle
    arrived: float
    stream: TextStream
    admitted: float = 0.0
    first_token_at: float = 0.0
    last_token_at: float = 0.0
    generated: int = 0
    slot: int = -1
    itl: list[float] = field(default_factory=list)
    #: The prefix of a chunked prefill in progress.
    prefix: Prefix | None = None


_Delivery = list[tuple[RequestHandle, TokenEvent]]
_T = TypeVar("_T")

#: Bounds of the retry delay suggested to a client refused for a full queue, in seconds.
MIN_RETRY_SECONDS, MAX_RETRY_SECONDS = 0.1, 60.0


class Scheduler:
    def __init__(
        self,
        engine: Engine,
        tokenizer: Tokenizer | None,
        max_queue: int,
        metrics: ServingMetrics | None = None,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.engine = engine
        self.spec = engine.spec
        self.tokenizer = tokenizer
        self.max_queue = max_queue
        self.metrics = metrics
        self._on_failure = on_failure
        self._ids = itertools.count(1)
        self._cv = threading.Condition()
        self._waiting: collections.deque[_Active] = collections.deque()
        self._cancels: set[int] = set()
        self._active: dict[int, _Active] = {}  # slot -> state, engine thread only (+ counts under lock)
        self._n_active = 0
        self._handles: dict[int, RequestHandle] = {}  # asyncio side
        self._accepting = False
        self._stopping = False
        self.failed = ""
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Moving average of finished requests' duration (arrival to last token), in seconds.
        self._request_seconds = 1.0

    # ---- asyncio side -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the engine thread; call on the event loop the handles will be consumed on."""
        self._loop = asyncio.get_running_loop()
        self._accepting = True
        self._thread = threading.Thread(target=self._run, name="engine-loop", daemon=True)
        self._thread.start()

    @property
    def in_flight(self) -> int:
        return len(self._handles)

    @property
    def accepting(self) -> bool:
        return self._accepting and not self.failed

    def submit(self, request: GenerationRequest) -> RequestHandle:
        if not self.accepting:
            raise NotAcceptingError(
                self.failed or "the worker is not accepting requests (loading or draining)"
            )
        with self._cv:
            if self._n_active + len(self._waiting) >= self.spec.max_batch + self.max_queue:
                if self.metrics:
                    self.metrics.finished("rejected_queue_full", request.api)
                retry = self.retry_after()
                raise QueueFullError(
                    f"request queue is full ({len(self._waiting)} waiting, {self._n_active} of "
                    f"{self.spec.max_batch} decode slots busy, serving.max_queue={self.max_queue}); "
                    f"retry in {retry:.1f}s",
                    retry,
                )
            handle = RequestHandle(self, next(self._ids), request)
            self._handles[handle.id] = handle
            self._waiting.append(_Active(handle, time.monotonic(), TextStream(self.tokenizer, request.stops)))
            self._update_gauges()
            self._cv.notify()
        return handle

    def retry_after(self) -> float:
        """Seconds until a slot is likely free for one more request: the waiting requests ahead and
        this one share max_batch slots that each free up after about one average request."""
        ahead = len(self._waiting) + 1
        estimate = self._request_seconds * ahead / self.spec.max_batch
        return min(MAX_RETRY_SECONDS, max(MIN_RETRY_SECONDS, estimate))

    def cancel(self, handle: RequestHandle) -> None:
        with self._cv:
            for state in self._waiting:
                if state.handle is handle:
                    self._waiting.remove(state)
                    self._update_gauges()
                    self._finish_now(handle, FinishReason.CANCELLED)
                    return
            self._cancels.add(handle.id)
            self._cv.notify()

    def begin_drain(self) -> None:
        """Refuse new requests; in-flight ones continue."""
        self._accepting = False

    async def wait_idle(self, within: float) -> bool:
        """Wait until no request is in flight; False if `within` seconds passed first."""
        deadline = time.monotonic() + within
        while self._handles:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def cancel_all(self) -> None:
        for handle in list(self._handles.values()):
            handle.cancel()

    def abort_all(self, reason: str) -> None:
        """End every request in flight now with an error (`TokenEvent.error` = reason) and free its
        slot before the next step; used when the drain grace has run out."""
        for handle in list(self._handles.values()):
            handle.cancel()
            self._finish_now(handle, FinishReason.ERROR, error=reason)

    def fail(self, reason: str) -> None:
        """Unrecoverable: end every request with an error now (even if the engine thread is stuck)."""
        self.failed = reason
        self._accepting = False
        with self._cv:
            self._waiting.clear()
            self._stopping = True
            self._cv.notify()
        for handle in list(self._handles.values()):
            self._finish_now(handle, FinishReason.ERROR, error=reason)

    async def stop(self) -> None:
        self._accepting = False
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 5.0)

    def _finish_now(self, handle: RequestHandle, reason: FinishReason, error: str = "") -> None:
        self._handles.pop(handle.id, None)
        if self.metrics and not handle.done:
            self.metrics.finished(reason.value, handle.request.api)
        handle._put(TokenEvent(None, finish=reason, error=error))

    def _deliver(self, batch: _Delivery) -> None:
        for handle, event in batch:
            if event.finish is not None:
                if self._handles.pop(handle.id, None) is None:
                    continue  # already finished (failed or cancelled while queued)
                if self.metrics:
                    self.metrics.finished(event.finish.value, handle.request.api)
                if event.timing is not None:
                    self._request_seconds += 0.2 * (event.timing.total_seconds - self._request_seconds)
            handle._put(event)

    def _post(self, batch: _Delivery) -> None:
        if batch and self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
                self._loop.call_soon_threadsafe(self._deliver, batch)

    def _update_gauges(self) -> None:
        if self.metrics:
            self.metrics.set_queue(len(self._waiting), self._n_active, self.spec.max_batch)

    # ---- engine thread ------------------------------------------------------------------------
    def _run(self) -> None:
        free = list(range(self.spec.max_batch - 1, -1, -1))
        pending: _Active | None = None  # a chunked prefill in progress; it holds a slot
        try:
            while True:
                with self._cv:
                    while not (self._stopping or self._waiting or self._active or self._cancels or pending):
                        self._cv.wait()
                    if self._stopping:
                        return
                    cancels, self._cancels = self._cancels, set()
                    admit = self._take_admissions(free, cancels) if pending is None else []
                    self._n_active = len(self._active) + len(admit) + (pending is not None)
                    self._update_gauges()
                batch: _Delivery = []
                for slot, state in list(self._active.items()):
                    if state.handle.id in cancels:
                        batch.append((state.handle, self._final(state, FinishReason.CANCELLED)))
                        self._release(free, slot)
                if pending is not None and pending.handle.id in cancels:
                    batch.append((pending.handle, self._final(pending, FinishReason.CANCELLED)))
                    free.append(pending.slot)
                    pending = None
                for state in admit:
                    if self.spec.chunked(len(state.handle.request.prompt_ids)):
                        pending = self._begin_chunked(state, free)
                    else:
                        self._admit(state, free, batch)
                pending = self._step(pending, free, batch)
                with self._cv:
                    self._n_active = len(self._active) + (pending is not None)
                    self._update_gauges()
                self._post(batch)
        except Exception as exc:  # the engine failed: nothing can be served any more
            log.exception("engine loop failed")
            message = f"engine failed: {type(exc).__name__}: {exc}"
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._fail_from_thread, message)

    def _take_admissions(self, free: list[int], cancels: set[int]) -> list[_Active]:
        """Waiting requests to admit now (under the lock), in arrival order: as many as there are
        free slots, their prefill buckets within one chunk's tokens; a prompt to be chunked goes
        alone (at least one request is always admitted when a slot is free)."""
        n_free = len(free) + sum(1 for s in self._active.values() if s.handle.id in cancels)
        budget = self.spec.prefill_chunk
        admit: list[_Active] = []
        used = 0
        while self._waiting and len(admit) < n_free:
            length = len(self._waiting[0].handle.request.prompt_ids)
            chunked = self.spec.chunked(length)
            cost = 0 if chunked else bucket_for(length, self.spec.prefill_buckets)
            if admit and budget and (chunked or used + cost > budget):
                break
            admit.append(self._waiting.popleft())
            used += cost
            if chunked:
                break
        return admit

    def _begin_chunked(self, state: _Active, free: list[int]) -> _Active:
        request = state.handle.request
        state.admitted = time.monotonic()
        state.slot = free.pop()
        state.prefix = self.engine.begin_prefill(request.prompt_ids, request.sampling)
        return state

    def _step(self, pending: _Active | None, free: list[int], batch: _Delivery) -> _Active | None:
        """The iteration's device work: the running slots' decode step, carrying the next chunk of
        the prefill in progress when there is one (one step, one pass over the weights); with no
        slot decoding, the chunk alone (then a decode step if it was the last). Returns the prefill
        still in progress."""
        if pending is not None and self._active:
            assert pending.prefix is not None
            prefix = pending.prefix
            outputs, first = self._timed(lambda: self.engine.decode_with_chunk(prefix))
            self._advance_all(outputs, free, batch)
            if first is None:
                return pending
            self._prefilled(pending, first, free, batch)
            return None
        if pending is not None:
            assert pending.prefix is not None
            first = self.engine.prefill_chunk(pending.prefix)
            if first is not None:
                self._prefilled(pending, first, free, batch)
                pending = None
        if self._active:
            self._advance_all(self._timed(self.engine.decode), free, batch)
        return pending

    def _timed(self, step: Callable[[], _T]) -> _T:
        """Run a step of the running slots, recording its time."""
        now = time.monotonic()
        result = step()
        if self.metrics:
            self.metrics.decode_step(time.monotonic() - now)
        return result

    def _advance_all(self, outputs: list[SampledToken], free: list[int], batch: _Delivery) -> None:
        for slot, state in list(self._active.items()):
            self._advance(state, outputs[slot], free, batch)

    def _prefilled(self, state: _Active, first: SampledToken, free: list[int], batch: _Delivery) -> None:
        """A chunked prefill finished: the request takes its slot and gets its first token."""
        assert state.prefix is not None
        self._active[state.slot] = state
        self.engine.insert(state.prefix, state.slot)
        state.prefix = None
        self._advance(state, first, free, batch)

    def _fail_from_thread(self, message: str) -> None:
        self.fail(message)
        if self._on_failure:
            self._on_failure(message)

    def _release(self, free: list[int], slot: int) -> None:
        del self._active[slot]
        self.engine.release(slot)
        free.append(slot)

    def _admit(self, state: _Active, free: list[int], batch: _Delivery) -> None:
        request = state.handle.request
        state.admitted = time.monotonic()
        prefix, first = self.engine.prefill(request.prompt_ids, request.sampling)
        state.slot = free.pop()
        self._active[state.slot] = state
        self.engine.insert(prefix, state.slot)
        self._advance(state, first, free, batch)

    def _advance(self, state: _Active, sampled: SampledToken, free: list[int], batch: _Delivery) -> None:
        request = state.handle.request
        now = time.monotonic()
        if state.generated == 0:
            state.first_token_at = now
            if self.metrics:
                self.metrics.first_token(now - state.arrived)
        elif self.metrics:
            self.metrics.inter_token(now - state.last_token_at)
        state.last_token_at = now
        if self.metrics:
            self.metrics.tokens_generated(1)
        if request.stop_at_eos and sampled.token == self.spec.eos_id:
            event = self._final(state, FinishReason.EOS)
        else:
            state.generated += 1
            text, matched = state.stream.push(sampled.token)
            finish: FinishReason | None = None
            if matched is not None:
                finish = FinishReason.STOP
            elif state.generated >= request.max_tokens or (
                len(request.prompt_ids) + state.generated >= self.spec.max_seq_len
            ):
                finish = FinishReason.LENGTH
                text += state.stream.flush()
            event = TokenEvent(
                sampled.token,
                sampled.logprob,
                text,
                finish,
                matched_stop=matched or "",
                completion_tokens=state.generated,
                timing=self._timing(state) if finish else None,
            )
        batch.append((state.handle, event))
        if event.finish is not None:
            self._release(free, state.slot)

    def _final(self, state: _Active, reason: FinishReason) -> TokenEvent:
        text = state.stream.flush() if reason is not FinishReason.CANCELLED else ""
        return TokenEvent(
            None, text=text, finish=reason, completion_tokens=state.generated, timing=self._timing(state)
        )

    def _timing(self, state: _Active) -> Timing:
        end = state.last_token_at or time.monotonic()
        decode_time = end - state.first_token_at if state.first_token_at else 0.0
        tps = (state.generated - 1) / decode_time if state.generated > 1 and decode_time > 0 else 0.0
        return Timing(
            queue_seconds=(state.admitted or end) - state.arrived,
            time_to_first_token_seconds=(state.first_token_at - state.arrived)
            if state.first_token_at
            else 0.0,
            total_seconds=end - state.arrived,
            decode_tokens_per_second=tps,
        )
