"""SentencePiece tokenizer with Grok-1's special ids, plus streaming decode and a tiny trainer.

The release's tokenizer (a 131072-piece SentencePiece BPE model, not part of this project) uses
pad 0, bos 1, eos 2, unk 3; `Tokenizer` checks a model file agrees before serving with it.
`IncrementalDecoder` turns a growing list of ids into text deltas without ever emitting half of a
multi-byte character (byte-fallback pieces arrive one byte at a time).
`train_tiny_tokenizer` trains a small model with the same special ids for tests and demos.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece as spm

from grok_worker.model_config import BOS_ID, EOS_ID, PAD_ID, UNK_ID  # the one definition


class Tokenizer:
    """Encode/decode text with a SentencePiece model that uses the release's special ids."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"tokenizer model {self.path} not found; set model.tokenizer_path to a .model file"
            )
        self._sp = spm.SentencePieceProcessor(model_file=str(self.path))
        # Measured once here (the worker loads the tokenizer off the event loop), never per request.
        pieces = (self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size()))
        self._max_piece_chars = max(len(str(piece)) for piece in pieces)
        got = (self._sp.pad_id(), self._sp.bos_id(), self._sp.eos_id(), self._sp.unk_id())
        if got != (PAD_ID, BOS_ID, EOS_ID, UNK_ID):
            raise ValueError(
                f"tokenizer {self.path}: special ids (pad, bos, eos, unk) are {got}, Grok-1 needs "
                f"{(PAD_ID, BOS_ID, EOS_ID, UNK_ID)}; train it with "
                f"pad_id={PAD_ID} bos_id={BOS_ID} eos_id={EOS_ID} unk_id={UNK_ID}"
            )

    @property
    def vocab_size(self) -> int:
        return int(self._sp.get_piece_size())

    @property
    def max_token_chars(self) -> int:
        """Longest piece x 4: normalization (NFKC, collapsed whitespace) can make the input a few
        times longer than the pieces it becomes, so the bound is kept loose rather than exact."""
        return 4 * self._max_piece_chars

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        ids: list[int] = self._sp.encode(text, out_type=int)
        return [BOS_ID, *ids] if add_bos else ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ids; special ids (pad/bos/eos) are dropped."""
        text: str = self._sp.decode([int(i) for i in ids if i not in (PAD_ID, BOS_ID, EOS_ID)])
        return text

    def id_to_piece(self, token_id: int) -> str:
        return str(self._sp.id_to_piece(token_id))

    def incremental(self) -> IncrementalDecoder:
        return IncrementalDecoder(self)


class IncrementalDecoder:
    """Streaming decode: `push(ids)` returns only the new, complete text since the last call.

    It decodes all ids so far and holds back a trailing U+FFFD (an incomplete UTF-8 sequence from
    byte-fallback pieces) until the bytes that complete it arrive.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tok = tokenizer
        self._ids: list[int] = []
        self._emitted = 0

    @property
    def text(self) -> str:
        return self._stable_text()

    def _stable_text(self) -> str:
        text = self._tok.decode(self._ids)
        return text.rstrip("\ufffd")

    def push(self, ids: Iterable[int]) -> str:
        self._ids.extend(int(i) for i in ids)
        text = self._stable_text()
        delta = text[self._emitted :]
        self._emitted = len(text)
        return delta

    def flush(self) -> str:
        """Everything not yet returned, including an incomplete trailing character (as U+FFFD)."""
        text = self._tok.decode(self._ids)
        delta = text[self._emitted :]
        self._emitted = len(text)
        return delta


def train_tiny_tokenizer(path: str | Path, vocab_size: int, corpus: Iterable[str]) -> Path:
    """Train a small SentencePiece BPE model with Grok-1's special ids and byte fallback.

    Writes `path` (a .model file) and returns it; takes about a second for a few KB of text.
    """
    out = Path(path)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(corpus)),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        pad_id=PAD_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        unk_id=UNK_ID,
        byte_fallback=True,
        split_digits=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        hard_vocab_limit=False,
        minloglevel=2,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(model.getvalue())
    return out
