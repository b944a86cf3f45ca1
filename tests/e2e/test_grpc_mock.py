"""The serving path over a real loopback gRPC connection, with the hand-checkable MockEngine.

The mock model continues a byte with the next byte and ends "z" with EOS, so every expected output
below can be worked out by hand (see grok_worker.engine.mock).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from grok.v1 import generation_pb2 as pb
from grok_worker.client import AsyncGrokClient
from grok_worker.engine.mock import MockEngine
from grok_worker.engine.text import ByteTokenizer
from grok_worker.model_config import EOS_ID
from grok_worker.server.app import WorkerServer
from grok_worker.server.local import start_local_server

TOK = ByteTokenizer()


@pytest.fixture
async def server() -> AsyncIterator[WorkerServer]:
    srv = await start_local_server(MockEngine(max_batch=4, max_seq_len=64), TOK, max_queue=4, metrics=True)
    yield srv
    await srv.drain(1.0)


@pytest.fixture
async def client(server: WorkerServer) -> AsyncIterator[AsyncGrokClient]:
    async with AsyncGrokClient(f"127.0.0.1:{server.port}", timeout=10) as c:
        yield c


async def test_unary_generate_returns_the_hand_computed_continuation(client: AsyncGrokClient) -> None:
    response = await client.generate("abc", max_tokens=5)
    assert response.text == "defgh"
    assert list(response.token_ids) == TOK.encode("defgh")
    assert response.finish_reason == pb.FINISH_REASON_LENGTH
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (3, 5)
    assert response.timing.total_seconds >= response.timing.time_to_first_token_seconds > 0


async def test_generation_stops_at_eos_after_z(client: AsyncGrokClient) -> None:
    response = await client.generate("w", max_tokens=10, return_logprobs=True)
    assert response.text == "xyz"
    assert response.finish_reason == pb.FINISH_REASON_EOS
    assert response.usage.completion_tokens == 3
    assert len(response.logprobs) == 3
    assert all(-1.0 < lp <= 0.0 for lp in response.logprobs)


async def test_streaming_yields_one_message_per_token_in_order(client: AsyncGrokClient) -> None:
    messages = [m async for m in client.generate_stream("k", max_tokens=4)]
    assert [m.text for m in messages] == ["l", "m", "n", "o"]
    assert [list(m.token_ids) for m in messages] == [[t] for t in TOK.encode("lmno")]
    assert [m.finish_reason for m in messages] == [0, 0, 0, pb.FINISH_REASON_LENGTH]
    assert messages[-1].usage.completion_tokens == 4


async def test_stop_string_spanning_tokens_is_matched_and_not_returned(client: AsyncGrokClient) -> None:
    response = await client.generate("a", max_tokens=20, stop=["xyz", "fg"])
    assert response.text == "bcde"
    assert response.finish_reason == pb.FINISH_REASON_STOP
    assert response.matched_stop == "fg"
    messages = [m async for m in client.generate_stream("a", max_tokens=20, stop=["fg"])]
    assert "".join(m.text for m in messages) == "bcde"
    # "f" might start the stop string, so it is held back rather than streamed.
    assert [m.text for m in messages] == ["b", "c", "d", "e", "", ""]


async def test_model_max_length_ends_a_request_with_length(
    server: WorkerServer, client: AsyncGrokClient
) -> None:
    prompt = [4 + ord("A")] * 30
    response = await client.generate(prompt, stop_at_eos=False)  # unset max_tokens: up to max length
    assert response.usage.completion_tokens == 64 - 30
    assert response.finish_reason == pb.FINISH_REASON_LENGTH


async def test_token_id_prompt_and_tokenize_round_trip(client: AsyncGrokClient) -> None:
    ids = await client.tokenize("hi", add_bos=True)
    assert ids == [1, *TOK.encode("hi")]
    assert await client.detokenize(ids) == "hi"
    response = await client.generate(ids, max_tokens=2)
    assert response.text == "jk"


async def test_seeded_sampling_is_reproducible_and_differs_from_greedy(client: AsyncGrokClient) -> None:
    params = {"max_tokens": 12, "temperature": 5.0, "seed": 1234, "stop_at_eos": False}
    first = await client.generate("a", **params)
    second = await client.generate("a", **params)
    assert list(first.token_ids) == list(second.token_ids)
    greedy = await client.generate("a", max_tokens=12)
    assert list(first.token_ids) != list(greedy.token_ids)
    top1 = await client.generate("a", max_tokens=12, temperature=5.0, top_k=1, seed=99)
    assert top1.text == greedy.text


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"prompt": ""}, "text"),
        ({"prompt": []}, "token_ids"),
        ({"prompt": "a" * 33}, "prompt"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 65}, "max_tokens"),
        ({"temperature": -0.5}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"prompt": [5, 260]}, "token_ids.ids[1]"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
)
async def test_bad_fields_are_invalid_argument_naming_the_field(
    client: AsyncGrokClient, params: dict[str, object], field: str
) -> None:
    prompt = params.pop("prompt", "a")
    assert isinstance(prompt, str | list)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await client.generate(prompt, **params)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith(field)
    assert (await client.generate("a", max_tokens=1)).text == "b"


async def test_model_info_reports_limits_and_serving_state(client: AsyncGrokClient) -> None:
    info = await client.info()
    assert (info.preset, info.vocab_size, info.max_seq_len, info.max_prompt_len) == ("mock", 260, 64, 32)
    assert list(info.prefill_buckets) == [8, 16, 32]
    assert info.load_state == pb.LOAD_STATE_SERVING
    assert info.load_progress == 1.0
    assert info.has_tokenizer
    assert info.eos_id == EOS_ID
    assert await client.health() == "SERVING"
    assert await client.health("grok.v1.GenerationService") == "SERVING"


async def test_token_ids_and_logprobs_are_returned_only_when_asked(client: AsyncGrokClient) -> None:
    bare = await client.generate("a", max_tokens=3, return_token_ids=False)
    assert (bare.text, list(bare.token_ids), list(bare.logprobs)) == ("bcd", [], [])
    messages = [m async for m in client.generate_stream("a", max_tokens=3, return_token_ids=False)]
    assert [list(m.token_ids) for m in messages] == [[], [], []]
    assert messages[-1].usage.completion_tokens == 3
    full = [m async for m in client.generate_stream("a", max_tokens=2, return_logprobs=True)]
    assert [len(m.logprobs) for m in full] == [1, 1]
