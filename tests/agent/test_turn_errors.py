"""How a turn reports failures: short user-facing messages, never a traceback."""

from __future__ import annotations

from typing import Any

from picobot.agent.llm import LLMAuthError, LLMConnectionError, LLMRateLimited, LLMServerError
from picobot.agent.turns import GENERIC_FAILURE, Agent
from picobot.core import events as ev
from tests.agent.conftest import Sleeps, collect
from tests.fakes.fake_openai import Drop, Fail, FakeOpenAI, Reply

S = "test:chat"


async def test_model_errors_become_short_user_messages(
    fake: FakeOpenAI, agent: Agent, sleeps: Sleeps
) -> None:
    cases = [
        ([Fail(401)], LLMAuthError),
        ([Fail(429, retry_after=1)] * 3, LLMRateLimited),
        ([Fail(500)] * 3, LLMServerError),
        ([Drop(after_chunks=2)], LLMConnectionError),  # after text: not retried
    ]
    for items, error in cases:
        fake.script(*items)
        events = await collect(agent.run_turn(S, "hi"))
        assert events[-1] == ev.TurnFailed(error.user_message)
        assert "Traceback" not in error.user_message and len(error.user_message) < 120
        assert fake.pending == 0
    assert len(fake.requests) == 1 + 3 + 3 + 1
    assert sleeps[:2] == [1.0, 1.0]
    assert await agent.history(S) == []  # failed turns leave no half-answers behind


async def test_rate_limit_retry_then_success(
    fake: FakeOpenAI, agent: Agent, sleeps: Sleeps
) -> None:
    fake.script(Fail(429, retry_after=3), Reply(text="there you go"))

    events = await collect(agent.run_turn(S, "hi"))

    assert events[-1] == ev.TurnFinished("there you go")
    assert sleeps == [3.0]


async def test_unexpected_crash_is_reported_without_traceback(agent: Agent) -> None:
    class Broken:
        name = "broken"

        def stream(self, messages: Any, tools: Any = None) -> Any:
            raise ZeroDivisionError("bug")

    agent.llm = Broken()

    events = await collect(agent.run_turn(S, "hi"))

    assert events[-1] == ev.TurnFailed(GENERIC_FAILURE)
