"""`grok-worker serve` with the tiny model from a release-format checkpoint, over loopback gRPC.

The server's greedy tokens must equal the model's own greedy decode (`forward` one request at a
time, no engine, no batching), also when several requests share the decode batch.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import pytest

from grok.v1 import generation_pb2 as pb
from grok_worker.client import GrokClient
from grok_worker.model_config import BOS_ID, DIMENSION_NAMES, PRESETS
from grok_worker.server.local import free_port, spawn_worker, wait_serving

pytestmark = pytest.mark.slow
CFG = PRESETS["tiny"]
PROMPTS = [[BOS_ID, 17, 99, 5], [BOS_ID, 400, 3, 3, 250, 7, 8, 9, 10, 11], [BOS_ID, 2, 300]]


CORPUS = [
    "The quick brown fox jumps over the lazy dog. Grok serves tokens over gRPC as they arrive.",
    "naïve café, 東京 and 🙂 need byte fallback; numbers 12345 are split into digits.",
] * 20


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from grok_worker.tokenizer import train_tiny_tokenizer

    return train_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tiny.model", 400, CORPUS)


@pytest.fixture(scope="module")
def target(checkpoint: Path, tokenizer_path: Path) -> Iterator[str]:
    port = free_port()
    proc = spawn_worker(
        port,
        "--tokenizer",
        str(tokenizer_path),
        "--preset",
        "tiny",
        "--checkpoint",
        str(checkpoint),
        "--max-batch",
        "2",
        "--max-seq-len",
        "32",
        "--prefill-buckets",
        "16",
        "--prefill-chunk",
        "4",  # the 10-token prompt below is prefilled in 3 chunks
        "--metrics-port",
        "0",
    )
    try:
        wait_serving(f"127.0.0.1:{port}", proc, timeout=300)
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


def reference(checkpoint: Path, n: int) -> list[list[int]]:
    from grok_worker.checkpoint import load_checkpoint
    from grok_worker.engine.model_engine import greedy_reference

    params = load_checkpoint(checkpoint, CFG)
    with jax.default_matmul_precision("float32"):
        return [greedy_reference(CFG, params, p, n, 32) for p in PROMPTS]


def test_greedy_output_equals_the_models_own_greedy_decode(target: str, checkpoint: Path) -> None:
    n = 6
    with GrokClient(target, timeout=60) as client:
        info = client.info()
        assert (info.preset, info.quantization) == ("tiny", "int8")
        # every dimension but max_seq_len, which ModelInfo reports as the serving length (--max-seq-len)
        assert {n: getattr(info, n) for n in DIMENSION_NAMES if n != "max_seq_len"} == {
            n: getattr(CFG, n) for n in DIMENSION_NAMES if n != "max_seq_len"
        }
        assert info.max_seq_len == 32
        assert info.load_state == pb.LOAD_STATE_SERVING

        def run(prompt: list[int]) -> list[int]:
            response = client.generate(prompt, max_tokens=n, stop_at_eos=False)
            assert response.finish_reason == pb.FINISH_REASON_LENGTH
            return list(response.token_ids)

        one_by_one = [run(p) for p in PROMPTS]
        with ThreadPoolExecutor(len(PROMPTS)) as pool:
            together = list(pool.map(run, PROMPTS))
    expected = reference(checkpoint, n)
    assert one_by_one == expected
    assert together == expected


def test_text_prompts_stream_text_that_matches_the_tokens(target: str, tokenizer_path: Path) -> None:
    from grok_worker.tokenizer import Tokenizer

    tok = Tokenizer(tokenizer_path)
    with GrokClient(target, timeout=60) as client:
        assert client.info().has_tokenizer
        prompt = "The quick brown fox"
        assert client.tokenize(prompt, add_bos=True) == [1, *tok.encode(prompt)]
        messages = list(client.generate_stream(prompt, add_bos=True, max_tokens=8, stop_at_eos=False))
        ids = [t for m in messages for t in m.token_ids]
        assert "".join(m.text for m in messages) == tok.decode([i for i in ids if i < tok.vocab_size])
        unary = client.generate(prompt, add_bos=True, max_tokens=8, stop_at_eos=False)
        assert list(unary.token_ids) == ids
        assert client.detokenize(ids[:3]) == tok.decode([i for i in ids[:3] if i < tok.vocab_size])
