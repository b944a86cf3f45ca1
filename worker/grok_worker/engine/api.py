"""The narrow interface between the serving loop and a model: prefill -> insert(slot) -> decode.

Data flow (one engine, driven by one thread of the serving loop, `grok_worker.engine.scheduler`):
1. `prefill(prompt_ids, sampling)` runs the prompt (padded to a compiled length bucket), samples the
   first completion token and returns it with an opaque `Prefix` (the prompt's KV cache).
2. `insert(prefix, slot)` copies that prefix into decode slot `slot`; from then on the slot's next
   input is the sampled token and its sampling parameters are the request's.
3. `decode()` runs one batched step for all `max_batch` slots and returns one `SampledToken` per
   slot (slots nobody uses produce garbage the loop ignores). New requests join between steps.
4. `release(slot)` tells the engine the slot is free (engines may ignore it).

Chunked prefill: a prompt whose bucket is longer than `spec.prefill_chunk` tokens is prefilled in
pieces of that many tokens, so the
serving loop can run a decode step for the other slots between two pieces:
`begin_prefill(prompt_ids, sampling)` makes an empty prefix, and each `prefill_chunk(prefix)` runs
the next `prefill_chunk` positions of the prompt into it, returning the first completion token after
the last piece (None before). The prefix then goes to `insert` like a whole-prompt one. While other
slots are decoding, `decode_with_chunk(prefix)` does both in one step: the decode step for every
slot and the prefix's next chunk, in one pass over the weights, with the same results as
`prefill_chunk(prefix)` followed by `decode()`.

Engines are stateful (they own the decode state) and are not thread-safe: exactly one thread calls
them. The same interface is implemented by the hand-checkable `MockEngine`, the real
`ModelEngine`, and the multi-host `BroadcastingEngine` wrapper.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from grok_worker.contract import default_buckets as default_buckets  # one definition, re-exported

#: Progress callback: (fraction done in [0, 1], message).
ProgressFn = Callable[[float, str], None]


@dataclass(frozen=True)
class SamplingParams:
    """Per-request sampling: temperature 0 is greedy; top_k 0 and top_p 1 disable truncation."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    #: 64-bit seed; with the same prompt it fixes every sampled token.
    seed: int = 0


@dataclass(frozen=True)
class SampledToken:
    token: int
    #: Log-probability of the token under the model's distribution (before sampling transforms).
    logprob: float


@dataclass(frozen=True)
class EngineSpec:
    """What the serving loop needs to know about an engine (and ModelInfo reports)."""

    name: str
    max_batch: int
    max_seq_len: int
    vocab_size: int
    eos_id: int
    #: Prompt-length buckets, ascending; the largest is the longest prompt accepted.
    prefill_buckets: tuple[int, ...]
    #: Prompts whose bucket is longer than this many tokens are prefilled in chunks of it (0: never).
    prefill_chunk: int = 0

    def chunked(self, prompt_len: int) -> bool:
        """Whether a prompt of this many tokens is prefilled in chunks: whenever its bucket is longer
        than a chunk (a short prompt in a long bucket then costs one chunk, not the bucket)."""
        return 0 < self.prefill_chunk < bucket_for(prompt_len, self.prefill_buckets)

    @property
    def max_prompt_len(self) -> int:
        return self.prefill_buckets[-1]


class Prefix:
    """Opaque per-engine result of a prefill (e.g. the prompt's KV cache)."""


@runtime_checkable
class Engine(Protocol):
    @property
    def spec(self) -> EngineSpec: ...

    def warmup(self, progress: ProgressFn | None = None) -> None:
        """Compile (and run once) every prefill bucket and the decode step."""

    def prefill(self, prompt_ids: Sequence[int], sampling: SamplingParams) -> tuple[Prefix, SampledToken]:
        """Run the prompt; return its prefix and the first sampled completion token."""

    def begin_prefill(self, prompt_ids: Sequence[int], sampling: SamplingParams) -> Prefix:
        """An empty prefix for a chunked prefill of the prompt (no device work yet)."""

    def prefill_chunk(self, prefix: Prefix) -> SampledToken | None:
        """Run the prompt's next chunk; the first completion token after the last chunk, else None."""

    def insert(self, prefix: Prefix, slot: int) -> None:
        """Place a prefix into decode slot `slot` (0 <= slot < max_batch)."""

    def decode(self) -> list[SampledToken]:
        """One batched decode step over every slot; one sampled token per slot."""

    def decode_with_chunk(self, prefix: Prefix) -> tuple[list[SampledToken], SampledToken | None]:
        """`decode()` and `prefill_chunk(prefix)` as one step; the prefix's slot is not decoding."""

    def release(self, slot: int) -> None:
        """Mark slot free; its content is ignored until the next insert."""


def bucket_for(length: int, buckets: Sequence[int]) -> int:
    """Smallest bucket that holds `length` tokens; ValueError when none does."""
    for size in buckets:
        if length <= size:
            return size
    raise ValueError(f"prompt of {length} tokens is longer than the largest prefill bucket {buckets[-1]}")
