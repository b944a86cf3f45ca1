"""The serving loop's request and event types (validated upstream by the server).

Data flow: the server turns a `grok.v1.GenerateRequest` into a `GenerationRequest`; the scheduler
answers with a stream of `TokenEvent`s, the last of which has `finish` set (and `timing`).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field

from grok_worker.engine.api import SamplingParams


class FinishReason(enum.Enum):
    LENGTH = "length"
    STOP = "stop"
    EOS = "eos"
    CANCELLED = "cancelled"
    #: The engine failed (e.g. a host of the group was lost); `TokenEvent.error` says why.
    ERROR = "error"


@dataclass(frozen=True)
class GenerationRequest:
    prompt_ids: tuple[int, ...]
    #: Completion tokens at most (the model's max length may end the request earlier).
    max_tokens: int
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stops: tuple[str, ...] = ()
    stop_at_eos: bool = True
    #: The front door it came through ("grpc", "http"): a metrics label.
    api: str = "grpc"

    def labelled(self, api: str) -> GenerationRequest:
        return dataclasses.replace(self, api=api)


@dataclass(frozen=True)
class Timing:
    queue_seconds: float
    time_to_first_token_seconds: float
    total_seconds: float
    decode_tokens_per_second: float


@dataclass(frozen=True)
class TokenEvent:
    """One generated token (or none, for a final event after EOS or a cancel) and its text delta."""

    token: int | None
    logprob: float = 0.0
    text: str = ""
    finish: FinishReason | None = None
    matched_stop: str = ""
    #: Completion tokens so far (EOS is not counted: it is never returned).
    completion_tokens: int = 0
    timing: Timing | None = None
    error: str = ""


class SchedulerError(Exception):
    """Base of the errors `Scheduler.submit` raises instead of queueing a request."""


class QueueFullError(SchedulerError):
    """The queue is full; `retry_after` is the scheduler's estimate, in seconds, of when a retry fits."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotAcceptingError(SchedulerError):
    """The scheduler is not serving (not started, draining, stopped or failed)."""
