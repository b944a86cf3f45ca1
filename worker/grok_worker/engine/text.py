"""Text around the token stream: the tokenizer interface, incremental detokenizing, stop strings.

Data flow per request, one generated token at a time (`TextStream.push`):
token id -> incremental detokenizer (emits only complete characters; a byte-fallback sequence that
is not yet valid UTF-8 is held) -> stop matcher (holds back any tail that could still be the start
of a stop string, so a stop spanning several tokens is matched and never leaks to the client) ->
the text delta the client may see now. `TextStream.flush()` releases the held tail at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from grok_worker.model_config import FIRST_ORDINARY_ID


@runtime_checkable
class Tokenizer(Protocol):
    """What the serving path needs from a tokenizer (the SentencePiece wrapper adapts to it)."""

    @property
    def vocab_size(self) -> int: ...

    @property
    def max_token_chars(self) -> int:
        """An upper bound on the characters of text one token stands for, so that text longer than
        N x this cannot be a prompt of N tokens (checked before tokenizing)."""

    def encode(self, text: str) -> list[int]:
        """Text -> token ids, without BOS (the BOS id is always `BOS_ID`)."""

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids -> text; special tokens (pad, bos, eos) decode to nothing."""


class ByteTokenizer:
    """A tokenizer that can be checked by hand: the special ids (pad/bos/eos/unk) come first, then
    id OFFSET+b is byte b."""

    OFFSET = FIRST_ORDINARY_ID

    @property
    def vocab_size(self) -> int:
        return self.OFFSET + 256

    @property
    def max_token_chars(self) -> int:
        return 1  # every character is at least one byte, and each byte one token

    def encode(self, text: str) -> list[int]:
        return [b + self.OFFSET for b in text.encode("utf-8")]

    def decode(self, ids: Sequence[int]) -> str:
        data = bytes(i - self.OFFSET for i in ids if self.OFFSET <= i < self.OFFSET + 256)
        return data.decode("utf-8", errors="replace")


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text deltas.

    Decodes a short window (from `prefix_offset`) rather than the whole list each time; comparing it
    with the decode of the same window without the newest tokens keeps tokenizers that treat the
    first piece specially (SentencePiece drops a leading space) consistent.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tok = tokenizer
        self._vocab = tokenizer.vocab_size
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0

    def push(self, token: int) -> str:
        # A model vocabulary may be larger than the tokenizer's; such ids have no text.
        if not 0 <= token < self._vocab:
            return ""
        self._ids.append(token)
        prefix_text = self._tok.decode(self._ids[self._prefix_offset : self._read_offset])
        new_text = self._tok.decode(self._ids[self._prefix_offset :])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            delta = new_text[len(prefix_text) :]
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._ids)
            return delta
        return ""

    def flush(self) -> str:
        """Whatever is still held (e.g. an incomplete byte sequence), decoded as is."""
        prefix_text = self._tok.decode(self._ids[self._prefix_offset : self._read_offset])
        new_text = self._tok.decode(self._ids[self._prefix_offset :])
        self._prefix_offset = self._read_offset = len(self._ids)
        return new_text[len(prefix_text) :]


class StopMatcher:
    """Finds the earliest stop string in streamed text and holds back possible partial matches."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._pending = ""

    def push(self, delta: str) -> tuple[str, str | None]:
        """Add text; return (text safe to emit, the stop string that matched or None)."""
        buffer = self._pending + delta
        best: tuple[int, str] | None = None
        for stop in self._stops:
            at = buffer.find(stop)
            if at >= 0 and (best is None or at < best[0]):
                best = (at, stop)
        if best is not None:
            self._pending = ""
            return buffer[: best[0]], best[1]
        hold = self._partial_suffix(buffer)
        self._pending = buffer[len(buffer) - hold :] if hold else ""
        return buffer[: len(buffer) - hold], None

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out

    def _partial_suffix(self, text: str) -> int:
        """Length of the longest suffix of text that is a proper prefix of some stop string."""
        longest = 0
        for stop in self._stops:
            for n in range(min(len(stop) - 1, len(text)), longest, -1):
                if stop.startswith(text[-n:]):
                    longest = n
                    break
        return longest


class TextStream:
    """Detokenizer + stop matcher for one request (or ids only, when there is no tokenizer)."""

    def __init__(self, tokenizer: Tokenizer | None, stops: Sequence[str]) -> None:
        self._detok = IncrementalDetokenizer(tokenizer) if tokenizer is not None else None
        self._stops = StopMatcher(stops)
        self.text = ""

    def push(self, token: int) -> tuple[str, str | None]:
        if self._detok is None:
            return "", None
        out, matched = self._stops.push(self._detok.push(token))
        self.text += out
        return out, matched

    def flush(self) -> str:
        if self._detok is None:
            return ""
        out, matched = self._stops.push(self._detok.flush())
        out = out if matched else out + self._stops.flush()
        self.text += out
        return out
