"""The OpenAI-compatible HTTP API over real loopback sockets: the official `openai` package, aiohttp
for what the SDK hides (raw SSE, headers, malformed bodies), and curl.

The server runs the hand-checkable MockEngine (the next token is the next byte, "z" ends with EOS),
so every expected completion can be worked out by hand; gRPC and HTTP share its one scheduler.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.request
from collections.abc import AsyncIterator

import aiohttp
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grok.v1 import generation_pb2 as pb
from grok_worker.client import AsyncGrokClient
from grok_worker.engine.mock import MockEngine
from grok_worker.engine.text import ByteTokenizer
from grok_worker.server.app import ServerOptions, WorkerServer
from grok_worker.server.local import start_local_server
from grok_worker.server.openai_schema import CHAT_TURN_STOP, ChatMessage, chat_prompt

TOK = ByteTokenizer()


@pytest.fixture
async def server() -> AsyncIterator[WorkerServer]:
    srv = await start_local_server(
        MockEngine(max_batch=4, max_seq_len=128, prefill_buckets=(16, 64)),
        TOK,
        max_queue=4,
        metrics=True,
        http=True,
    )
    yield srv
    await srv.drain(1.0)


def base_url(server: WorkerServer) -> str:
    return f"http://127.0.0.1:{server.http_port}"


@pytest.fixture
async def client(server: WorkerServer) -> AsyncIterator[openai.AsyncOpenAI]:
    # max_retries=0: the SDK would otherwise retry 429 and 503 on its own and hide them.
    async with openai.AsyncOpenAI(
        base_url=f"{base_url(server)}/v1", api_key="unused", max_retries=0, timeout=10
    ) as c:
        yield c


async def test_completion_is_the_hand_computed_continuation_with_usage(client: openai.AsyncOpenAI) -> None:
    completion = await client.completions.create(model="mock", prompt="abc", max_tokens=5, temperature=0)
    assert completion.object == "text_completion"
    assert completion.model == "mock"
    assert completion.choices[0].text == "defgh"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 5)
    assert completion.usage.total_tokens == 8


async def test_token_id_prompt_and_eos_ends_with_stop(client: openai.AsyncOpenAI) -> None:
    completion = await client.completions.create(
        model="mock", prompt=TOK.encode("w"), max_tokens=10, temperature=0, logprobs=0
    )
    choice = completion.choices[0]
    assert (choice.text, choice.finish_reason) == ("xyz", "stop")
    assert choice.logprobs is not None
    assert choice.logprobs.tokens == ["x", "y", "z"]
    assert choice.logprobs.text_offset == [0, 1, 2]
    assert choice.logprobs.token_logprobs is not None
    assert all(-1.0 < lp <= 0.0 for lp in choice.logprobs.token_logprobs)


async def test_streamed_completion_sends_one_event_per_token(client: openai.AsyncOpenAI) -> None:
    stream = await client.completions.create(
        model="mock",
        prompt="k",
        max_tokens=4,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert texts == ["l", "m", "n", "o"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices] == [None, None, None, "length"]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4


async def test_stop_strings_spanning_tokens_are_matched_and_not_returned(client: openai.AsyncOpenAI) -> None:
    completion = await client.completions.create(
        model="mock", prompt="a", max_tokens=20, temperature=0, stop=["xyz", "fg"]
    )
    assert (completion.choices[0].text, completion.choices[0].finish_reason) == ("bcde", "stop")
    stream = await client.completions.create(
        model="mock", prompt="a", max_tokens=20, temperature=0, stop="fg", stream=True
    )
    assert "".join([c.choices[0].text async for c in stream]) == "bcde"


async def test_a_seed_gives_the_same_tokens_over_http_and_grpc(
    server: WorkerServer, client: openai.AsyncOpenAI
) -> None:
    texts = []
    for _ in range(2):
        completion = await client.completions.create(
            model="mock", prompt="k", max_tokens=8, temperature=2.0, seed=7
        )
        texts.append(completion.choices[0].text)
    async with AsyncGrokClient(f"127.0.0.1:{server.port}", timeout=10) as grpc_client:
        response = await grpc_client.generate("k", max_tokens=8, temperature=2.0, seed=7)
    assert texts[0] == texts[1] == response.text


async def test_chat_uses_the_documented_template_and_stops_at_the_next_user_turn(
    client: openai.AsyncOpenAI,
) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    prompt = chat_prompt([ChatMessage.model_validate(m) for m in messages])
    assert prompt == "System: Be brief.\n\nUser: hi\n\nAssistant:"
    chat = await client.chat.completions.create(
        model="mock",
        messages=messages,
        max_tokens=3,
        temperature=0,  # type: ignore[arg-type]
    )
    assert chat.object == "chat.completion"
    assert chat.choices[0].message.role == "assistant"
    assert chat.choices[0].message.content == ";<="  # ":" is followed by the next bytes
    assert chat.usage is not None
    assert chat.usage.prompt_tokens == 1 + len(prompt)  # BOS + one token per byte
    stream = await client.chat.completions.create(
        model="mock",
        messages=messages,
        max_tokens=3,
        temperature=0,
        stream=True,  # type: ignore[arg-type]
    )
    chunks = [c async for c in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ";<="
    assert chunks[-1].choices[0].finish_reason == "length"
    assert CHAT_TURN_STOP == "\n\nUser:"


async def test_models_lists_the_served_model_and_an_unknown_one_is_404(client: openai.AsyncOpenAI) -> None:
    models = await client.models.list()
    assert [m.id for m in models.data] == ["mock"]
    assert (await client.models.retrieve("mock")).id == "mock"
    with pytest.raises(openai.NotFoundError) as err:
        await client.completions.create(model="gpt-4", prompt="a")
    assert "this worker serves 'mock'" in err.value.message


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"temperature": -0.5}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"prompt": [5, 999]}, "prompt"),
        ({"prompt": [5, 2**40]}, "prompt"),
        ({"max_tokens": 2**40}, "max_tokens"),
        ({"prompt": "a" * 65}, "prompt"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"n": 2}, "n"),
        ({"logprobs": 3}, "logprobs"),
        ({"prompt": ["a", "b"]}, "prompt"),
    ],
)
async def test_bad_fields_are_400_in_openai_error_shape_naming_the_field(
    client: openai.AsyncOpenAI, params: dict[str, object], param: str
) -> None:
    body: dict[str, object] = {"model": "mock", "prompt": "a", "max_tokens": 3, **params}
    with pytest.raises(openai.BadRequestError) as err:
        await client.completions.create(**body)  # type: ignore[call-overload]
    assert err.value.status_code == 400
    assert isinstance(err.value.body, dict)
    assert err.value.body["type"] == "invalid_request_error"
    assert err.value.body["param"] == param
    assert err.value.body["message"]


async def test_raw_http_errors_health_and_sse_framing(server: WorkerServer) -> None:
    url = base_url(server)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/v1/completions", data=b"{not json") as r:
            assert r.status == 400
            assert (await r.json())["error"]["type"] == "invalid_request_error"
        async with http.post(f"{url}/v1/completions", data=b'{"prompt": "\xff"}') as r:
            assert r.status == 400  # not UTF-8: a plain 400, not a server error
        async with http.get(f"{url}/v1/nothing") as r:
            assert r.status == 404
            assert "error" in await r.json()
        async with http.post(f"{url}/v1/completions", data=b"x" * (5 * 1024 * 1024)) as r:
            assert r.status == 413
            assert "larger than" in (await r.json())["error"]["message"]
        async with http.get(f"{url}/health") as r:
            assert (r.status, (await r.json())["status"]) == (200, "SERVING")
        body = {"prompt": "k", "max_tokens": 2, "temperature": 0, "stream": True}
        async with http.post(f"{url}/v1/completions", json=body) as r:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            raw = (await r.read()).decode()
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert [json.loads(e[6:])["choices"][0]["text"] for e in events[:-1]] == ["l", "m"]


async def test_http_requests_are_counted_apart_from_grpc(
    server: WorkerServer, client: openai.AsyncOpenAI
) -> None:
    await client.completions.create(model="mock", prompt="a", max_tokens=2, temperature=0)
    with pytest.raises(openai.BadRequestError):
        await client.completions.create(model="mock", prompt="a", max_tokens=2, temperature=-1)
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
    assert 'grok_requests_total{api="http",outcome="length"} 1.0' in body
    assert 'grok_requests_total{api="http",outcome="rejected_invalid"} 1.0' in body
    assert 'api="grpc"' not in body


async def test_a_full_queue_is_429_with_retry_after() -> None:
    server = await start_local_server(
        MockEngine(max_batch=1, max_seq_len=64, step_delay=0.02), TOK, max_queue=0, http=True
    )
    try:
        async with openai.AsyncOpenAI(
            base_url=f"{base_url(server)}/v1", api_key="unused", max_retries=0
        ) as client:
            busy = asyncio.create_task(
                client.completions.create(
                    model="mock", prompt="a", max_tokens=30, temperature=0, extra_body={"ignore_eos": True}
                )
            )
            while server.scheduler is None or server.scheduler.in_flight == 0:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            with pytest.raises(openai.RateLimitError) as err:
                await client.completions.create(model="mock", prompt="b", max_tokens=3)
            assert err.value.status_code == 429
            assert int(err.value.response.headers["Retry-After"]) >= 1
            assert "queue is full" in err.value.message
            await busy
    finally:
        await server.drain(1.0)


async def test_while_draining_health_is_503_and_new_requests_are_refused() -> None:
    server = await start_local_server(
        MockEngine(max_batch=1, max_seq_len=64, step_delay=0.02), TOK, max_queue=2, http=True
    )
    url = base_url(server)
    async with aiohttp.ClientSession() as http:
        body = {"prompt": "a", "max_tokens": 20, "temperature": 0, "ignore_eos": True}
        running = asyncio.create_task(http.post(f"{url}/v1/completions", json=body))
        while server.scheduler is None or server.scheduler.in_flight == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        drain = asyncio.create_task(server.drain(5.0))
        await asyncio.sleep(0.05)
        async with http.get(f"{url}/health") as r:
            assert (r.status, (await r.json())["status"]) == (503, "DRAINING")
        async with http.post(f"{url}/v1/completions", json=body) as r:
            assert r.status == 503
            assert "DRAINING" in (await r.json())["error"]["message"]
        async with await running as r:
            assert r.status == 200
            assert (await r.json())["choices"][0]["text"] == "bcdefghijklmnopqrstu"
        assert await drain is True


async def test_curl_streams_a_completion(server: WorkerServer) -> None:
    curl = shutil.which("curl")
    assert curl, "these tests need curl (apt-get install curl)"
    body = json.dumps({"model": "mock", "prompt": "k", "max_tokens": 3, "temperature": 0, "stream": True})
    proc = await asyncio.create_subprocess_exec(
        curl,
        "-sN",
        f"{base_url(server)}/v1/completions",
        "-H",
        "Content-Type: application/json",
        "-d",
        body,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    lines = [line for line in out.decode().splitlines() if line]
    assert lines[-1] == "data: [DONE]"
    assert [json.loads(line[6:])["choices"][0]["text"] for line in lines[:-1]] == ["l", "m", "n"]


async def test_a_client_that_disconnects_mid_stream_frees_its_slot() -> None:
    engine = MockEngine(max_batch=1, max_seq_len=64, step_delay=0.02)
    server = await start_local_server(engine, TOK, max_queue=2, http=True)
    try:
        body = {"prompt": "a", "max_tokens": 50, "temperature": 0, "ignore_eos": True, "stream": True}
        url = f"{base_url(server)}/v1/completions"
        async with aiohttp.ClientSession() as http, http.post(url, json=body) as r:
            assert (await r.content.readline()).startswith(b"data: ")
        # the connection is closed: the request is cancelled and its slot freed
        assert server.scheduler is not None
        for _ in range(200):
            if server.scheduler.in_flight == 0:
                break
            await asyncio.sleep(0.02)
        assert server.scheduler.in_flight == 0
        steps = engine.decode_steps
        await asyncio.sleep(0.1)
        assert engine.decode_steps == steps
        assert engine.decode_steps < 50
    finally:
        await server.drain(1.0)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
_bodies = st.fixed_dictionaries(
    {},
    optional={
        "prompt": st.text(max_size=80) | st.lists(st.integers(-5, 300), max_size=40) | _json_values,
        "messages": st.lists(
            st.fixed_dictionaries(
                {"role": st.sampled_from(["user", "system", "tool"]), "content": _json_values}
            )
        ),
        "max_tokens": st.integers(-3, 100) | _json_values,
        "temperature": st.floats(-1, 3) | _json_values,
        "top_p": st.floats(-0.5, 1.5) | _json_values,
        "seed": st.integers(-1, 2**65) | _json_values,
        "stop": st.text(max_size=5) | st.lists(st.text(max_size=5), max_size=6) | _json_values,
        "stream": st.booleans(),
        "logprobs": st.integers(-1, 2) | _json_values,
        "n": st.integers(0, 3),
        "model": st.sampled_from(["mock", "other"]),
    },
)


def test_fuzzed_bodies_never_cause_a_server_error() -> None:
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        start_local_server(MockEngine(max_batch=4, max_seq_len=128, prefill_buckets=(16, 64)), TOK, http=True)
    )
    url = base_url(server)

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=_bodies, chat=st.booleans())
    def check(body: dict[str, object], chat: bool) -> None:
        path = "/v1/chat/completions" if chat else "/v1/completions"

        async def post() -> tuple[int, bytes]:
            async with aiohttp.ClientSession() as http, http.post(f"{url}{path}", json=body) as r:
                return r.status, await r.read()

        status, raw = loop.run_until_complete(post())
        assert status in (200, 400, 404), raw
        if status != 200:
            assert set(json.loads(raw)["error"]) == {"message", "type", "param", "code"}

    try:
        check()
        health = loop.run_until_complete(_get_json(f"{url}/health"))
        assert health["status"] == "SERVING"
    finally:
        loop.run_until_complete(server.drain(1.0))
        loop.close()


async def _get_json(url: str) -> dict[str, object]:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        result: dict[str, object] = await r.json()
        return result


async def test_the_default_bind_answers_on_ipv4_and_ipv6_loopback_on_one_port() -> None:
    server = WorkerServer(pb.ModelInfo(preset="mock"), ServerOptions(bind_host="[::]", http_port=0))
    await server.start()
    try:
        for host in ("127.0.0.1", "[::1]"):
            health = await _get_json(f"http://{host}:{server.http_port}/health")
            assert health["status"] == "LOADING"
    finally:
        await server.drain(0.1)


async def test_an_http_port_in_use_is_a_clear_error() -> None:
    first = WorkerServer(pb.ModelInfo(preset="mock"), ServerOptions(bind_host="127.0.0.1", http_port=0))
    await first.start()
    try:
        second = WorkerServer(
            pb.ModelInfo(preset="mock"), ServerOptions(bind_host="127.0.0.1", http_port=first.http_port)
        )
        with pytest.raises(
            OSError, match=r"could not bind the HTTP port \d+ \(serving.http_port / --http-port\): .*in use"
        ):
            await second.start()
    finally:
        await first.drain(0.1)
