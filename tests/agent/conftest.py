"""Shared fixtures: the fake OpenAI server, the real SDK behind `OpenAILLM`, and agents."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from picobot.agent.openai_llm import OpenAILLM
from picobot.agent.tools import ToolRegistry
from picobot.agent.turns import Agent
from picobot.config import AgentConfig, LLMConfig
from picobot.core import events as ev
from tests.fakes.fake_openai import FakeOpenAI

E = TypeVar("E")
TIMEOUT = 5.0  # every wait in these tests is bounded: a bug fails, it does not hang


class Sleeps(list[float]):
    """An injected `sleep` that records the delays and returns at once."""

    async def __call__(self, delay: float) -> None:
        self.append(delay)


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def llm_config(fake: FakeOpenAI, **overrides: Any) -> LLMConfig:
    values: dict[str, Any] = {
        "provider": "openai",
        "base_url": fake.base_url,
        "api_key": "sk-test",
        "model": "fake-model",
        "timeout": 5.0,
        "max_retries": 2,
    }
    return LLMConfig(**(values | overrides))


@pytest.fixture
async def make_llm(fake: FakeOpenAI, sleeps: Sleeps) -> AsyncIterator[Callable[..., OpenAILLM]]:
    made: list[OpenAILLM] = []

    def make(**overrides: Any) -> OpenAILLM:
        llm = OpenAILLM(llm_config(fake, **overrides), sleep=sleeps)
        made.append(llm)
        return llm

    yield make
    for llm in made:
        await llm.aclose()


@pytest.fixture
async def llm(make_llm: Callable[..., OpenAILLM]) -> OpenAILLM:
    return make_llm()


MakeAgent = Callable[..., Awaitable[Agent]]


@pytest.fixture
async def make_agent(llm: OpenAILLM, tmp_path: Path) -> AsyncIterator[MakeAgent]:
    """`await make_agent(tools=..., max_tool_iterations=...)`: an open agent on tmp_path."""
    made: list[Agent] = []

    async def make(*, tools: ToolRegistry | None = None, **config: Any) -> Agent:
        agent = Agent(llm, AgentConfig(**config), data_dir=tmp_path, tools=tools)
        await agent.open()
        made.append(agent)
        return agent

    yield make
    for agent in made:
        await agent.aclose()


@pytest.fixture
async def agent(make_agent: MakeAgent) -> Agent:
    return await make_agent()


async def collect(events: AsyncIterator[ev.RunEvent]) -> list[ev.RunEvent]:
    async with asyncio.timeout(TIMEOUT):
        return [event async for event in events]


def of_type(events: list[Any], cls: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, cls)]


def text_of(events: list[ev.RunEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, ev.TextDelta))


class Running:
    """A turn consumed in the background; tests wait for its events, never sleep."""

    def __init__(self, events: AsyncIterator[ev.RunEvent]) -> None:
        self.events: list[ev.RunEvent] = []
        self._changed = asyncio.Condition()
        self.task = asyncio.create_task(self._consume(events))

    async def _consume(self, events: AsyncIterator[ev.RunEvent]) -> None:
        async for event in events:
            self.events.append(event)
            async with self._changed:
                self._changed.notify_all()

    async def wait_for(self, cls: type[E]) -> E:
        async with asyncio.timeout(TIMEOUT), self._changed:
            await self._changed.wait_for(lambda: bool(of_type(self.events, cls)))
        return of_type(self.events, cls)[0]

    async def done(self) -> list[ev.RunEvent]:
        async with asyncio.timeout(TIMEOUT):
            await self.task
        return self.events
