"""A hand-checkable engine: the next token is a fixed function of the previous one.

With `ByteTokenizer` ids (4 + byte), the greedy continuation of a byte is the next byte, and the
letter "z" is followed by EOS: the prompt "w" generates "xyz" and then stops at EOS. The logits put
`PEAK` on that token and 0 elsewhere, and go through the real sampling function, so temperature,
top-k, top-p and seeds behave as with a model. `step_delay` slows steps down so tests can cancel,
fill the queue or hit deadlines while a request is in flight. No KV cache: a slot is just its last
token (and a position, which feeds the sampling key). With `prefill_chunk` set, prompts longer than
it are prefilled in chunks (`begin_prefill` / `prefill_chunk`); `ops` records the order of engine
calls, so tests can see the serving loop interleave chunks with decode steps (or fuse them:
`decode_with_chunk`, one op "decode+chunk" costing one `step_delay`).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Sequence

import jax
import numpy as np

from grok_worker.engine.api import EngineSpec, Prefix, ProgressFn, SampledToken, SamplingParams
from grok_worker.engine.sampling import SlotSampling, sample
from grok_worker.engine.text import ByteTokenizer
from grok_worker.model_config import EOS_ID

PEAK = 8.0
_Z = ord("z") + ByteTokenizer.OFFSET
_A = ord("a") + ByteTokenizer.OFFSET


def next_token(prev: int) -> int:
    """The mock model: byte b -> byte b+1 (mod 256), "z" -> EOS, special ids -> "a"."""
    if prev == _Z:
        return EOS_ID
    if prev < ByteTokenizer.OFFSET:
        return _A
    return ByteTokenizer.OFFSET + (prev - ByteTokenizer.OFFSET + 1) % 256


class _MockPrefix(Prefix):
    def __init__(self, last: int, position: int, sampling: SamplingParams) -> None:
        self.last, self.position, self.sampling = last, position, sampling


class _ChunkedPrefix(Prefix):
    def __init__(self, prompt_ids: Sequence[int], sampling: SamplingParams) -> None:
        self.prompt_ids, self.sampling = list(prompt_ids), sampling
        self.done = 0
        self.result: _MockPrefix | None = None


class MockEngine:
    """Implements `grok_worker.engine.api.Engine` with `next_token` as its model."""

    def __init__(
        self,
        max_batch: int = 4,
        max_seq_len: int = 64,
        prefill_buckets: Sequence[int] = (8, 16, 32),
        step_delay: float = 0.0,
        prefill_chunk: int = 0,
    ) -> None:
        vocab = ByteTokenizer().vocab_size
        self._spec = EngineSpec(
            "mock", max_batch, max_seq_len, vocab, EOS_ID, tuple(prefill_buckets), prefill_chunk
        )
        self.step_delay = step_delay
        self._last = np.zeros((max_batch,), np.int32)
        self._positions = np.zeros((max_batch,), np.int32)
        self._sampling = SlotSampling(max_batch)
        self._sample = jax.jit(sample)
        self.decode_steps = 0
        self.prefills = 0
        #: Set while a step runs; tests use it to observe the loop.
        self.busy = threading.Event()
        #: The latest engine calls in order: "prefill", "chunk", "decode", "decode+chunk".
        self.ops: collections.deque[str] = collections.deque(maxlen=4096)

    @property
    def spec(self) -> EngineSpec:
        return self._spec

    def _logits(self, last: np.ndarray) -> np.ndarray:
        logits = np.zeros((last.shape[0], self._spec.vocab_size), np.float32)  # (B, V)
        logits[np.arange(last.shape[0]), [next_token(int(t)) for t in last]] = PEAK
        return logits

    def warmup(self, progress: ProgressFn | None = None) -> None:
        for i, _ in enumerate(self._spec.prefill_buckets):
            self.prefill([_A], SamplingParams())
            if progress:
                progress((i + 1) / (len(self._spec.prefill_buckets) + 1), "compiled prefill bucket")
        self.decode()
        self.prefills = self.decode_steps = 0
        self.ops.clear()
        if progress:
            progress(1.0, "compiled decode step")

    def prefill(self, prompt_ids: Sequence[int], sampling: SamplingParams) -> tuple[Prefix, SampledToken]:
        self.prefills += 1
        self.ops.append("prefill")
        return self._first(prompt_ids, sampling)

    def begin_prefill(self, prompt_ids: Sequence[int], sampling: SamplingParams) -> Prefix:
        return _ChunkedPrefix(prompt_ids, sampling)

    def prefill_chunk(self, prefix: Prefix) -> SampledToken | None:
        self.ops.append("chunk")
        if self.step_delay:
            time.sleep(self.step_delay)
        return self._chunk(prefix)

    def decode_with_chunk(self, prefix: Prefix) -> tuple[list[SampledToken], SampledToken | None]:
        """One step (one `step_delay`): the chunk and the decode step, as a fused model step is."""
        self.ops.append("decode+chunk")
        return self._decode(), self._chunk(prefix)

    def _chunk(self, prefix: Prefix) -> SampledToken | None:
        assert isinstance(prefix, _ChunkedPrefix)
        assert self._spec.prefill_chunk > 0
        prefix.done = min(len(prefix.prompt_ids), prefix.done + self._spec.prefill_chunk)
        if prefix.done < len(prefix.prompt_ids):
            return None
        self.prefills += 1
        prefix.result, first = self._first(prefix.prompt_ids, prefix.sampling)
        return first

    def _first(self, prompt_ids: Sequence[int], sampling: SamplingParams) -> tuple[_MockPrefix, SampledToken]:
        last = np.array([prompt_ids[-1]], np.int32)
        one = SlotSampling.single(sampling)
        position = np.array([len(prompt_ids)], np.int32)
        tokens, logprobs = self._sample(self._logits(last), *one.arrays(), position)
        first = SampledToken(int(tokens[0]), float(logprobs[0]))
        return _MockPrefix(first.token, len(prompt_ids), sampling), first

    def insert(self, prefix: Prefix, slot: int) -> None:
        if isinstance(prefix, _ChunkedPrefix):
            assert prefix.result is not None, "insert before the last chunk"
            prefix = prefix.result
        assert isinstance(prefix, _MockPrefix)
        self._last[slot] = prefix.last
        self._positions[slot] = prefix.position
        self._sampling.set(slot, prefix.sampling)

    def decode(self) -> list[SampledToken]:
        self.ops.append("decode")
        return self._decode()

    def _decode(self) -> list[SampledToken]:
        self.busy.set()
        try:
            if self.step_delay:
                time.sleep(self.step_delay)
            self.decode_steps += 1
            self._positions += 1
            tokens, logprobs = self._sample(
                self._logits(self._last), *self._sampling.arrays(), self._positions.copy()
            )
            tokens_np, logprobs_np = np.asarray(tokens), np.asarray(logprobs)
            self._last = tokens_np.astype(np.int32).copy()
            return [SampledToken(int(t), float(lp)) for t, lp in zip(tokens_np, logprobs_np, strict=True)]
        finally:
            self.busy.clear()

    def release(self, slot: int) -> None:
        self._last[slot] = 0
