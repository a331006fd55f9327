"""OpenAILLM against the fake server through the real `openai` SDK: events, errors, retries."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from typing import Any

import pytest
from openai.types.chat import ChatCompletionChunk

from picobot.agent import llm as llm_mod
from picobot.agent.llm import (
    ContextTooLong,
    Finish,
    LLMAuthError,
    LLMBadRequest,
    LLMConnectionError,
    LLMError,
    LLMEvent,
    LLMQuotaExceeded,
    LLMRateLimited,
    LLMServerError,
    LLMTimeout,
    LLMUnreachable,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    Usage,
)
from picobot.agent.openai_llm import OpenAILLM, _Reader
from picobot.config import LLMConfig
from tests.agent.conftest import TIMEOUT, Sleeps, of_type
from tests.fakes.fake_openai import Drop, Fail, FakeOpenAI, Reply
from tests.fakes.fake_openai import ToolCall as FakeCall

USER = [{"role": "user", "content": "hello"}]


async def events_of(llm: OpenAILLM, tools: Any = None) -> list[LLMEvent]:
    async with asyncio.timeout(TIMEOUT):
        return [e async for e in llm.stream(USER, tools)]


async def test_text_reasoning_usage_and_finish(fake: FakeOpenAI, llm: OpenAILLM) -> None:
    usage = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    fake.script(Reply(text="Hello there, world", reasoning="think first", usage=usage))

    events = await events_of(llm)

    assert "".join(e.text for e in of_type(events, TextDelta)) == "Hello there, world"
    assert len(of_type(events, TextDelta)) > 1  # really streamed
    assert "".join(e.text for e in of_type(events, ReasoningDelta)) == "think first"
    assert events[-2:] == [Usage(11, 3), Finish("stop")]
    body = fake.last_request
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["model"] == "fake-model" and "tools" not in body


def test_reasoning_field_used_by_openrouter() -> None:
    # The fake speaks DeepSeek's `reasoning_content`; OpenRouter/Ollama say `reasoning`.
    chunk = ChatCompletionChunk.model_validate(
        {
            "id": "x",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "delta": {"reasoning": "hmm"}, "finish_reason": None}],
        }
    )
    assert _Reader(None)._events(chunk) == [ReasoningDelta("hmm")]  # type: ignore[arg-type]


async def test_tool_calls_are_assembled_by_index(fake: FakeOpenAI, llm: OpenAILLM) -> None:
    args = {"city": "Zürich", "days": [1, 2, 3]}
    fake.script(
        Reply(
            text="Checking.",
            tool_calls=[FakeCall("weather", args, id="call_a"), FakeCall("time")],
            chunk_size=3,
        )
    )
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {}}}]

    events = await events_of(llm, tools)

    calls = of_type(events, ToolCall)
    assert [(c.id, c.name) for c in calls] == [("call_a", "weather"), ("call_1_1", "time")]
    assert json.loads(calls[0].arguments) == args
    assert json.loads(calls[1].arguments) == {}
    assert events[-1] == Finish("tool_calls")
    assert fake.last_request["tools"] == tools


# -- error classification and retries ------------------------------------------------------

# Every LLMError subclass must appear here (see test_every_error_class_is_covered).
CASES: list[tuple[Callable[[], Any], type[LLMError]]] = [
    (lambda: Fail(401, code="invalid_api_key"), LLMAuthError),
    (lambda: Fail(403), LLMAuthError),
    (lambda: Fail(429, code="insufficient_quota", type="insufficient_quota"), LLMQuotaExceeded),
    (lambda: Fail(429, retry_after=2), LLMRateLimited),
    (lambda: Fail(400, "maximum context length is 8", "context_length_exceeded"), ContextTooLong),
    (lambda: Fail(404, "The model `x` does not exist.", code="model_not_found"), LLMBadRequest),
    (lambda: Fail(500), LLMServerError),
    (lambda: Fail(503), LLMServerError),
    (lambda: Drop(after_chunks=0), LLMConnectionError),
]


@pytest.mark.parametrize(("make_item", "expected"), CASES)
async def test_errors_are_classified(
    fake: FakeOpenAI,
    make_llm: Callable[..., OpenAILLM],
    sleeps: Sleeps,
    make_item: Callable[[], Any],
    expected: type[LLMError],
) -> None:
    llm = make_llm(max_retries=2)
    fake.script(*(make_item() for _ in range(3)))

    with pytest.raises(LLMError) as info:
        await events_of(llm)

    assert type(info.value) is expected
    attempts = 3 if expected.retryable else 1
    assert len(fake.requests) == attempts  # retried only where retrying can help
    assert len(sleeps) == attempts - 1
    assert info.value.user_message.startswith("⚠️") and "Traceback" not in str(info.value)


async def test_timeout_is_classified(fake: FakeOpenAI, make_llm: Callable[..., OpenAILLM]) -> None:
    llm = make_llm(timeout=0.05, max_retries=0)
    fake.script(Reply(text="too slow", gate=asyncio.Event(), gate_after=0))

    with pytest.raises(LLMTimeout) as info:
        await events_of(llm)

    assert isinstance(info.value, TimeoutError) and info.value.retryable


def test_every_error_class_is_covered() -> None:
    def subclasses(cls: type) -> set[type]:
        return {s for c in cls.__subclasses__() for s in {c, *subclasses(c)}}

    covered = {expected for _, expected in CASES} | {LLMTimeout, LLMUnreachable}
    assert subclasses(LLMError) <= covered
    assert all(getattr(llm_mod, c.__name__) is c for c in subclasses(LLMError))


async def test_an_unreachable_endpoint_is_named_and_not_called_a_lost_connection(
    sleeps: Sleeps,
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = LLMConfig(
        provider="openai", base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-x", max_retries=1
    )
    llm = OpenAILLM(config, sleep=sleeps)
    try:
        with pytest.raises(LLMUnreachable) as info:
            await events_of(llm)
    finally:
        await llm.aclose()
    assert f"http://127.0.0.1:{port}/v1" in str(info.value)
    assert "Lost the connection" not in info.value.user_message
    assert len(sleeps) == 1  # retried like any connection error


async def test_rate_limit_honours_retry_after(
    fake: FakeOpenAI, llm: OpenAILLM, sleeps: Sleeps
) -> None:
    fake.script(Fail(429, retry_after=7), Reply(text="after the wait"))

    events = await events_of(llm)

    assert sleeps == [7.0]
    assert of_type(events, TextDelta)[0].text.startswith("afte")
    assert len(fake.requests) == 2


async def test_long_retry_after_is_not_waited_for(
    fake: FakeOpenAI, llm: OpenAILLM, sleeps: Sleeps
) -> None:
    fake.script(Fail(429, retry_after=3600), Reply(text="never"))

    with pytest.raises(LLMRateLimited) as info:
        await events_of(llm)

    assert info.value.retry_after == 3600
    assert sleeps == [] and len(fake.requests) == 1


async def test_server_error_then_success_backs_off(
    fake: FakeOpenAI, llm: OpenAILLM, sleeps: Sleeps
) -> None:
    fake.script(Fail(502), Reply(text="ok"))

    events = await events_of(llm)

    assert of_type(events, TextDelta) == [TextDelta("ok")]
    assert len(sleeps) == 1 and 0 < sleeps[0] <= 8


async def test_drop_before_any_text_is_retried(
    fake: FakeOpenAI, llm: OpenAILLM, sleeps: Sleeps
) -> None:
    fake.script(Drop(after_chunks=0), Reply(text="second try"))

    events = await events_of(llm)

    assert "".join(e.text for e in of_type(events, TextDelta)) == "second try"
    assert len(fake.requests) == 2


async def test_drop_after_text_is_not_retried(
    fake: FakeOpenAI, llm: OpenAILLM, sleeps: Sleeps
) -> None:
    # A retry would make the user see the first words twice.
    fake.script(Drop(after_chunks=2, text="abcdefghijkl", chunk_size=3), Reply(text="dup"))
    seen: list[LLMEvent] = []

    with pytest.raises(LLMConnectionError):
        async for event in llm.stream(USER):
            seen.append(event)

    assert seen == [TextDelta("abc"), TextDelta("def")]
    assert len(fake.requests) == 1 and sleeps == []
    assert fake.pending == 1


async def test_closing_the_stream_closes_the_connection(fake: FakeOpenAI, llm: OpenAILLM) -> None:
    gate = asyncio.Event()
    fake.script(Reply(text="a long answer that never ends", gate=gate, gate_after=2))
    stream = llm.stream(USER)

    first = await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]

    assert first == TextDelta("a lo")
    await fake.wait_cancelled(1)
