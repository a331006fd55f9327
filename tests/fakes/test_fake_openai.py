"""The fake OpenAI server, proven against the real ``openai`` SDK."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
import pytest
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletionChunk

from tests.fakes.fake_openai import Drop, Fail, FakeOpenAI, Reply, ToolCall

USER = [{"role": "user", "content": "hello"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def client(fake: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    # max_retries=0: every Fail reaches the test instead of being retried by the SDK.
    async with AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0) as c:
        yield c


async def open_stream(
    client: AsyncOpenAI, messages: list[dict[str, Any]] = USER, **kwargs: Any
) -> AsyncStream[ChatCompletionChunk]:
    return await client.chat.completions.create(
        model="fake-model", messages=messages, stream=True, **kwargs
    )


async def collect(stream: AsyncStream[ChatCompletionChunk]) -> list[ChatCompletionChunk]:
    return [chunk async for chunk in stream]


def text_of(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# -- streaming ---------------------------------------------------------------------------


async def test_streamed_text_reassembles_exactly(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    text = "Héllo, wörld! 👋 Multi-chunk\nanswer."
    fake.script(Reply(text=text, chunk_size=5))

    chunks = await collect(await open_stream(client))

    assert text_of(chunks) == text
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == -(-len(text) // 5)  # really split, 5 chars each
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:])
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert all(c.object == "chat.completion.chunk" for c in chunks)


async def test_response_is_real_sse(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script(Reply(text="abc"))

    raw = await client.chat.completions.with_raw_response.create(
        model="fake-model", messages=USER, stream=True
    )
    body = (await raw.http_response.aread()).decode()

    assert raw.headers["content-type"].startswith("text/event-stream")
    events = body.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(e.startswith("data: ") for e in events[:-1])
    assert json.loads(events[0].removeprefix("data: "))["choices"][0]["delta"] == {
        "role": "assistant",
        "content": "abc",
    }


async def test_tool_call_arguments_reassemble(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    args = {"city": "Zürich", "days": [1, 2, 3], "units": "metric"}
    fake.script(
        Reply(
            text="Let me check.",
            tool_calls=[ToolCall("get_weather", args, id="call_abc"), ToolCall("now", {})],
        )
    )

    chunks = await collect(await open_stream(client, tools=[WEATHER_TOOL]))

    # Accumulate like an agent does: keyed by index, arguments concatenated.
    calls: dict[int, dict[str, str]] = {}
    fragments: dict[int, int] = {}
    for chunk in chunks:
        for tc in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            call = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            if tc.id:
                assert tc.type == "function" and tc.function is not None
                call["id"], call["name"] = tc.id, tc.function.name or ""
            if tc.function and tc.function.arguments:
                call["arguments"] += tc.function.arguments
                fragments[tc.index] = fragments.get(tc.index, 0) + 1

    assert text_of(chunks) == "Let me check."
    assert calls[0]["id"] == "call_abc" and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == args
    assert fragments[0] > 3  # the JSON really was split across deltas
    assert calls[1]["id"] == "call_1_1" and calls[1]["name"] == "now"  # generated id
    assert json.loads(calls[1]["arguments"]) == {}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_malformed_arguments_are_sent_verbatim(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script(Reply(tool_calls=[ToolCall("broken", '{"city": "Par')]))

    chunks = await collect(await open_stream(client))

    sent = "".join(
        tc.function.arguments or ""
        for c in chunks
        for tc in c.choices[0].delta.tool_calls or []
        if tc.function
    )
    assert sent == '{"city": "Par'


async def test_reasoning_content_is_an_extra_delta_field(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.script(Reply(reasoning="First, think hard.", text="42"))

    chunks = await collect(await open_stream(client))

    deltas = [c.choices[0].delta for c in chunks]
    # Unknown fields survive on the pydantic models (extra="allow").
    reasoning = "".join(getattr(d, "reasoning_content", None) or "" for d in deltas)
    assert reasoning == "First, think hard."
    assert deltas[0].model_extra == {"reasoning_content": "Firs"}
    # Reasoning comes before any content.
    first_content = next(i for i, d in enumerate(deltas) if d.content)
    assert all(getattr(d, "reasoning_content", None) is None for d in deltas[first_content:])
    assert text_of(chunks) == "42"


async def test_usage_chunk_only_when_requested(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    usage = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    fake.script(Reply(text="hi", usage=usage), Reply(text="hi"))

    with_usage = await collect(await open_stream(client, stream_options={"include_usage": True}))
    without = await collect(await open_stream(client))

    last = with_usage[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.total_tokens == 14
    assert all(c.usage is None for c in with_usage[:-1])
    assert with_usage[-2].choices[0].finish_reason == "stop"
    assert all(c.choices and c.usage is None for c in without)


async def test_finish_reason_override(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script(Reply(text="truncat", finish_reason="length"))

    chunks = await collect(await open_stream(client))

    assert chunks[-1].choices[0].finish_reason == "length"


async def test_delay_slows_the_stream(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script(Reply(text="abcdefgh", chunk_size=2, delay=0.02))
    loop = asyncio.get_running_loop()

    start = loop.time()
    chunks = await collect(await open_stream(client))

    # 4 content chunks + final chunk + [DONE]: at least 5 gaps of 20 ms (a lower bound only).
    assert loop.time() - start >= 5 * 0.02 * 0.9
    assert text_of(chunks) == "abcdefgh"


# -- non-streaming -----------------------------------------------------------------------


async def test_non_stream_completion(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script(
        Reply(text="Sure.", reasoning="hmm", tool_calls=[ToolCall("get_weather", {"city": "Oslo"})])
    )

    completion = await client.chat.completions.create(model="fake-model", messages=USER)

    assert completion.object == "chat.completion"
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Sure."
    assert choice.message.model_extra == {"reasoning_content": "hmm"}
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.id == "call_1_0"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"}
    assert completion.usage is not None and completion.usage.total_tokens > 0


async def test_non_stream_tool_only_reply_has_null_content(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.script(Reply(tool_calls=[ToolCall("now")]))

    completion = await client.chat.completions.create(model="fake-model", messages=USER)

    assert completion.choices[0].message.content is None


async def test_default_responder_echoes_last_user_message(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    messages = [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "second"}]},
    ]

    streamed = text_of(await collect(await open_stream(client, messages)))
    plain = await client.chat.completions.create(model="fake-model", messages=messages)

    assert streamed == "You said: second"
    assert plain.choices[0].message.content == "You said: second"


async def test_callable_script_item_sees_the_request(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script(lambda body: Reply(text=f"{len(body['messages'])} messages"))

    chunks = await collect(await open_stream(client, [*USER, *USER]))

    assert text_of(chunks) == "2 messages"
    assert fake.pending == 0


async def test_models_endpoint(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    page = await client.models.list()
    model = await client.models.retrieve("fake-model")

    assert [m.id for m in page.data] == ["fake-model"]
    assert model.id == "fake-model"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("gpt-nope")


# -- errors ------------------------------------------------------------------------------


async def test_wrong_api_key_is_401(fake: FakeOpenAI) -> None:
    fake.script(Reply(text="never sent"))

    async with AsyncOpenAI(base_url=fake.base_url, api_key="sk-wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as info:
            await open_stream(bad)
        with pytest.raises(openai.AuthenticationError):
            await bad.models.list()

    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    assert fake.pending == 1  # a rejected request does not consume the script
    assert fake.request_headers[0]["Authorization"] == "Bearer sk-wrong"


@pytest.mark.parametrize("stream", [True, False])
async def test_rate_limit_with_retry_after(
    fake: FakeOpenAI, client: AsyncOpenAI, stream: bool
) -> None:
    fake.script(Fail(429, "Slow down", code="rate_limit_exceeded", retry_after=7))

    with pytest.raises(openai.RateLimitError) as info:
        # A streaming request fails at create(), before any chunk.
        await client.chat.completions.create(model="fake-model", messages=USER, stream=stream)

    err = info.value
    assert err.status_code == 429
    assert err.response.headers["retry-after"] == "7"
    assert err.code == "rate_limit_exceeded"
    assert "Slow down" in err.message
    assert err.body == {
        "message": "Slow down",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors(fake: FakeOpenAI, client: AsyncOpenAI, status: int) -> None:
    fake.script(Fail(status))

    with pytest.raises(openai.InternalServerError) as info:
        await open_stream(client)

    assert info.value.status_code == status
    assert info.value.type == "server_error"


async def test_context_length_exceeded(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script(
        Fail(400, "This model's maximum context length is 8 tokens.", "context_length_exceeded")
    )

    with pytest.raises(openai.BadRequestError) as info:
        await open_stream(client)

    assert info.value.code == "context_length_exceeded"
    assert info.value.type == "invalid_request_error"
    assert "maximum context length" in info.value.message


async def test_sdk_retries_honour_retry_after(fake: FakeOpenAI) -> None:
    # With retries on, the SDK hides a scripted Fail: the agent only sees the next item.
    fake.script(Fail(429, retry_after=0.01), Reply(text="after retry"))

    async with AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=1) as retrying:
        chunks = await collect(await open_stream(retrying))

    assert text_of(chunks) == "after retry"
    assert len(fake.requests) == 2


async def test_drop_mid_stream_raises_connection_error(
    fake: FakeOpenAI, client: AsyncOpenAI
) -> None:
    fake.script(Drop(after_chunks=2, text="abcdefghijkl", chunk_size=3))
    stream = await open_stream(client)
    received: list[str] = []

    with pytest.raises(openai.APIConnectionError) as info:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")

    assert received == ["abc", "def"]  # the chunks before the cut arrive intact
    assert not isinstance(info.value, openai.APITimeoutError)
    assert isinstance(info.value.__cause__, httpx2.RemoteProtocolError)
    await fake.wait_idle()
    assert fake.cancelled == 0  # a drop is the server's doing, not a client disconnect


async def test_drop_before_response_fails_create(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script(Drop(after_chunks=0), Drop(after_chunks=3))

    with pytest.raises(openai.APIConnectionError) as streamed:
        await open_stream(client)
    with pytest.raises(openai.APIConnectionError) as plain:
        # Non-stream requests are always dropped before the response.
        await client.chat.completions.create(model="fake-model", messages=USER)

    assert isinstance(streamed.value.__cause__, httpx2.RemoteProtocolError)
    assert isinstance(plain.value.__cause__, httpx2.RemoteProtocolError)


# -- validation --------------------------------------------------------------------------


async def test_unanswered_tool_call_is_rejected(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    messages = [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        {"role": "user", "content": "and?"},
    ]

    with pytest.raises(openai.BadRequestError) as info:
        await open_stream(client, messages)
    assert "c2" in info.value.message and "c1" not in info.value.message.split(":")[-1]

    fake.validate_tool_pairing = False
    assert text_of(await collect(await open_stream(client, messages))) == "You said: and?"


async def test_orphan_tool_message_is_rejected(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    messages = [*USER, {"role": "tool", "tool_call_id": "nope", "content": "x"}]

    with pytest.raises(openai.BadRequestError) as info:
        await open_stream(client, messages)

    assert "role 'tool'" in info.value.message


# -- recording and synchronisation -------------------------------------------------------


async def test_requests_are_recorded_with_tools(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    fake.script(Reply(tool_calls=[ToolCall("get_weather", {"city": "Rome"})]), Reply(text="Sunny"))

    first = await collect(await open_stream(client, tools=[WEATHER_TOOL], tool_choice="auto"))
    call = first[0].choices[0].delta.tool_calls
    assert call is not None and call[0].id == "call_1_0"
    followup = [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1_0", "content": "sunny, 25C"},
    ]
    second = await collect(await open_stream(client, followup, tools=[WEATHER_TOOL]))

    assert text_of(second) == "Sunny"
    assert len(fake.requests) == 2
    req0, req1 = fake.requests
    assert req0["model"] == "fake-model" and req0["stream"] is True
    assert req0["tools"] == [WEATHER_TOOL] and req0["tool_choice"] == "auto"
    assert req0["messages"] == USER
    assert req1["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_1_0",
        "content": "sunny, 25C",
    }
    assert fake.last_request is req1
    assert fake.request_headers[1]["Authorization"] == "Bearer sk-test"


async def test_gate_pauses_stream_until_set(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    gate = asyncio.Event()
    fake.script(Reply(text="one two three", chunk_size=4, gate=gate))
    stream = await open_stream(client)
    chunks = aiter(stream)

    first = await anext(chunks)
    assert first.choices[0].delta.content == "one "
    pending_next = asyncio.create_task(anext(chunks))
    # A full HTTP round trip through the same server and loop: had the stream not been
    # paused, the rest would have been written long before this returns.
    await client.models.list()
    assert not pending_next.done()
    assert fake.in_flight == 1

    gate.set()
    rest = [await pending_next, *[c async for c in chunks]]

    assert "one " + text_of(rest) == "one two three"
    await fake.wait_idle()
    assert fake.cancelled == 0


async def test_closing_stream_early_counts_cancelled(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    gate = asyncio.Event()
    fake.script(Reply(text="complete"), Reply(text="never finished", gate=gate))
    await collect(await open_stream(client))
    assert fake.cancelled == 0  # a stream read to the end is not a cancellation

    stream = await open_stream(client)
    await anext(aiter(stream))
    assert fake.in_flight == 1
    await stream.close()

    await fake.wait_cancelled(1)
    await fake.wait_idle()
    assert fake.cancelled == 1
    assert not gate.is_set()  # the server noticed while still paused on the gate


async def test_concurrent_streams_are_tracked(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    gates = [asyncio.Event(), asyncio.Event()]
    fake.script(*(Reply(text=f"stream {i}", gate=g) for i, g in enumerate(gates)))

    async def run() -> str:
        return text_of(await collect(await open_stream(client)))

    tasks = [asyncio.create_task(run()) for _ in gates]
    await fake.wait_until(lambda: fake.in_flight == 2, what="two open streams")
    for gate in gates:
        gate.set()
    results = await asyncio.gather(*tasks)

    assert sorted(results) == ["stream 0", "stream 1"]
    assert fake.max_in_flight == 2
    await fake.wait_idle()
    assert fake.in_flight == 0


async def test_wait_requests(fake: FakeOpenAI, client: AsyncOpenAI) -> None:
    task = asyncio.create_task(client.chat.completions.create(model="fake-model", messages=USER))

    await fake.wait_requests(1)
    assert fake.requests[0]["messages"] == USER
    await task
    with pytest.raises(AssertionError, match="2 requests"):
        await fake.wait_requests(2, timeout=0.05)


async def test_base_url_needs_start() -> None:
    with pytest.raises(RuntimeError):
        _ = FakeOpenAI().base_url


# -- media endpoints, through the real client ------------------------------------------------


async def test_media_endpoints_with_the_real_client() -> None:
    import base64

    from openai import AsyncOpenAI, BadRequestError

    from tests.fakes.openai_media import ogg_opus

    async with FakeOpenAI() as fake:
        client = AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0)
        try:
            result = await client.audio.transcriptions.create(
                model="whisper-1", file=("voice.ogg", ogg_opus())
            )
            assert result.text == fake.media.transcript
            assert fake.media.transcriptions[0].filename == "voice.ogg"
            with pytest.raises(BadRequestError, match="Invalid file format"):
                await client.audio.transcriptions.create(
                    model="whisper-1", file=("voice.ogg", b"not audio at all")
                )
            speech = await client.audio.speech.create(
                model="gpt-4o-mini-tts", voice="alloy", input="hi", response_format="opus"
            )
            assert speech.content.startswith(b"OggS")
            assert fake.media.speech[0]["response_format"] == "opus"
            image = await client.images.generate(
                model="gpt-image-1", prompt="a cat", size="256x256"
            )
            assert image.data and image.data[0].b64_json
            assert base64.b64decode(image.data[0].b64_json).startswith(b"\x89PNG")
        finally:
            await client.close()
