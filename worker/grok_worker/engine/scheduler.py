"""Continuous batching: a bounded queue, fixed decode slots, one engine thread.

Data flow: `Scheduler.submit` (on the asyncio loop) puts a request in the waiting queue and returns
a `RequestHandle`. The engine thread loops: free the slots of cancelled requests; admit waiting
requests into free slots (prefill -> insert, which yields each one's first token); run one batched
`decode` for all slots; turn each slot's token into a `TokenEvent` (detokenize, stop strings, EOS,
max tokens, model max length) and free the slots of finished requests. Events go back to the
asyncio loop in one `call_soon_threadsafe` per step, into each handle's queue. Device work never
runs on the event loop, and new requests join between steps.
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

from grok_worker.engine.api import Engine, SampledToken
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


_Delivery = list[tuple[RequestHandle, TokenEvent]]


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
                    self.metrics.finished("rejected_queue_full")
                raise QueueFullError(
                    f"request queue is full ({len(self._waiting)} waiting, {self._n_active} of "
                    f"{self.spec.max_batch} decode slots busy, serving.max_queue={self.max_queue}); retry later"
                )
            handle = RequestHandle(self, next(self._ids), request)
            self._handles[handle.id] = handle
            self._waiting.append(_Active(handle, time.monotonic(), TextStream(self.tokenizer, request.stops)))
            self._update_gauges()
            self._cv.notify()
        return handle

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
            self.metrics.finished(reason.value)
        handle._put(TokenEvent(None, finish=reason, error=error))

    def _deliver(self, batch: _Delivery) -> None:
        for handle, event in batch:
            if event.finish is not None:
                if self._handles.pop(handle.id, None) is None:
                    continue  # already finished (failed or cancelled while queued)
                if self.metrics:
                    self.metrics.finished(event.finish.value)
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
        try:
            while True:
                with self._cv:
                    while not (self._stopping or self._waiting or self._active or self._cancels):
                        self._cv.wait()
                    if self._stopping:
                        return
                    cancels, self._cancels = self._cancels, set()
                    admit: list[_Active] = []
                    n_free = len(free) + sum(1 for s in self._active.values() if s.handle.id in cancels)
                    while self._waiting and len(admit) < n_free:
                        admit.append(self._waiting.popleft())
                    self._n_active = len(self._active) + len(admit)
                    self._update_gauges()
                batch: _Delivery = []
                for slot, state in list(self._active.items()):
                    if state.handle.id in cancels:
                        batch.append((state.handle, self._final(state, FinishReason.CANCELLED)))
                        self._release(free, slot)
                for state in admit:
                    self._admit(state, free, batch)
                if self._active:
                    now = time.monotonic()
                    outputs = self.engine.decode()
                    step = time.monotonic() - now
                    if self.metrics:
                        self.metrics.decode_step(step)
                    for slot, state in list(self._active.items()):
                        self._advance(state, outputs[slot], free, batch)
                with self._cv:
                    self._n_active = len(self._active)
                    self._update_gauges()
                self._post(batch)
        except Exception as exc:  # the engine failed: nothing can be served any more
            log.exception("engine loop failed")
            message = f"engine failed: {type(exc).__name__}: {exc}"
            if self._loop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._fail_from_thread, message)

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
