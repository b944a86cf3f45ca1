"""The SentencePiece wrapper: release special ids, round trips, streaming decode of multi-byte text."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from grok_worker.model_config import BOS_ID, EOS_ID, PAD_ID
from grok_worker.tokenizer import Tokenizer, train_tiny_tokenizer

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Grok-1 is a mixture of experts model with 314 billion parameters.",
    "Kubernetes schedules pods onto nodes; operators reconcile custom resources.",
    "Numbers like 12345 and 67890 are split into digits.",
] * 20


@functools.cache
def tokenizer(tmp: str) -> Tokenizer:
    return Tokenizer(train_tiny_tokenizer(Path(tmp) / "tiny.model", 512, CORPUS))


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    return tokenizer(str(tmp_path_factory.mktemp("tok")))


def test_special_ids_are_the_releases(tok: Tokenizer) -> None:
    assert [tok.id_to_piece(i) for i in (PAD_ID, BOS_ID, EOS_ID)] == ["<pad>", "<s>", "</s>"]
    assert tok.vocab_size == 512


def test_encode_decode_round_trip_with_bos_and_unseen_characters(tok: Tokenizer) -> None:
    text = "The fox likes café ☕ and 42 zebras"
    ids = tok.encode(text, add_bos=True)
    assert ids[0] == BOS_ID
    assert all(0 <= i < 512 for i in ids)
    assert tok.decode(ids) == text  # byte fallback covers characters the corpus never had
    assert tok.decode([*tok.encode("lazy dog"), EOS_ID, PAD_ID]) == "lazy dog"


def test_incremental_decode_never_emits_half_a_character(tok: Tokenizer) -> None:
    text = "Grok says ☕ and 日本"
    ids = tok.encode(text)
    dec = tok.incremental()
    pieces = [dec.push([i]) for i in ids]
    assert "".join(pieces) + dec.flush() == text
    assert all("\ufffd" not in p for p in pieces)


def test_a_model_with_other_special_ids_is_refused(tmp_path: Path) -> None:
    import io

    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS),
        model_writer=buf,
        vocab_size=100,
        hard_vocab_limit=False,
        minloglevel=2,
    )  # default: unk 0, bos 1, eos 2
    (tmp_path / "other.model").write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="special ids"):
        Tokenizer(tmp_path / "other.model")
