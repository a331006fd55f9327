"""The `schedule` tool and the /reminders and /cancel commands, through a real Agent and the
real OpenAI SDK against the fake server (which scripts the model's tool calls)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from picobot.agent.abilities import agent_answer, build_tools
from picobot.agent.openai_llm import OpenAILLM
from picobot.agent.schedule import Scheduler, ScheduleStore, Target
from picobot.agent.tools import ToolContext, default_tools
from picobot.agent.turns import Agent
from picobot.config import AgentConfig, Config
from picobot.core.messages import InboundMessage, OutboundMessage, Sender
from tests.agent.conftest import collect, text_of
from tests.fakes.fake_openai import Fail, FakeOpenAI, Reply, ToolCall

NOW = 1_800_000_000.0


def inbound(text: str, chat: str = "42") -> InboundMessage:
    return InboundMessage("telegram", chat, Sender("7", "alice"), text)


@pytest.fixture
async def setup(
    llm: OpenAILLM, tmp_path: Path
) -> AsyncIterator[tuple[Agent, Scheduler, list[OutboundMessage]]]:
    sent: list[OutboundMessage] = []

    async def deliver(msg: OutboundMessage) -> None:
        sent.append(msg)

    async with ScheduleStore.in_dir(tmp_path) as store:
        scheduler = Scheduler(store, deliver, clock=lambda: NOW, max_per_chat=2)
        tools = build_tools(Config(), scheduler)
        agent = Agent(llm, AgentConfig(), data_dir=tmp_path, tools=tools, reminders=scheduler)
        async with agent:
            yield agent, scheduler, sent


def tool_results(fake: FakeOpenAI) -> list[str]:
    return [m["content"] for m in fake.last_request["messages"] if m["role"] == "tool"]


async def test_the_model_schedules_a_reminder_for_this_chat(
    fake: FakeOpenAI, setup: tuple[Agent, Scheduler, list[OutboundMessage]]
) -> None:
    agent, scheduler, _ = setup
    fake.script(
        Reply(tool_calls=[ToolCall("schedule", {"text": "tea", "in_seconds": 300})]),
        Reply(text="I will remind you."),
    )
    msg = inbound("remind me of tea in 5 minutes")
    events = await collect(agent.run_turn(msg.session_key, msg.text, inbound=msg))
    assert text_of(events) == "I will remind you."
    (result,) = tool_results(fake)
    assert result.startswith("Scheduled #1 ")
    (entry,) = await scheduler.entries("telegram:42")
    assert (entry.text, entry.due, entry.cron) == ("tea", NOW + 300, None)
    assert "schedule" in {t["function"]["name"] for t in fake.requests[0]["tools"]}


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ({"text": "x", "at": "2020-01-01T09:00:00+00:00"}, "in the past"),
        ({"text": "x", "cron": "not a cron at all"}, "invalid cron"),
        ({"text": "x", "cron": "*/5 * * * * *"}, "exactly 5 fields"),
        ({"action": "cancel", "id": 99}, "no entry #99"),
        ({"action": "dance"}, "unknown action"),
        ({"text": "x", "in_seconds": 60, "run_agent": "yes"}, "run_agent must be"),
    ],
)
async def test_refused_calls_return_an_error_result_and_the_turn_goes_on(
    fake: FakeOpenAI,
    setup: tuple[Agent, Scheduler, list[OutboundMessage]],
    arguments: dict[str, object],
    reason: str,
) -> None:
    agent, scheduler, _ = setup
    fake.script(Reply(tool_calls=[ToolCall("schedule", arguments)]), Reply(text="Sorry."))
    msg = inbound("schedule something odd")
    events = await collect(agent.run_turn(msg.session_key, msg.text, inbound=msg))
    assert text_of(events) == "Sorry."
    (result,) = tool_results(fake)
    assert result.startswith("error: ") and reason in result
    assert await scheduler.entries("telegram:42") == []


async def test_the_limit_per_chat_is_an_error_result(
    fake: FakeOpenAI, setup: tuple[Agent, Scheduler, list[OutboundMessage]]
) -> None:
    agent, _, _ = setup
    calls = [ToolCall("schedule", {"text": f"r{i}", "in_seconds": 60}) for i in range(3)]
    fake.script(Reply(tool_calls=calls), Reply(text="Done."))
    msg = inbound("three reminders")
    await collect(agent.run_turn(msg.session_key, msg.text, inbound=msg))
    results = tool_results(fake)
    assert [r.split()[0] for r in results] == ["Scheduled", "Scheduled", "error:"]
    assert "schedule.max_per_chat" in results[2]


async def test_list_and_cancel_through_the_tool(
    fake: FakeOpenAI, setup: tuple[Agent, Scheduler, list[OutboundMessage]]
) -> None:
    agent, scheduler, _ = setup
    msg = inbound("x")
    entry = await scheduler.create(Target("telegram", "42"), "stretch", in_seconds=60)
    fake.script(
        Reply(tool_calls=[ToolCall("schedule", {"action": "list"})]),
        Reply(tool_calls=[ToolCall("schedule", {"action": "cancel", "id": entry.id})]),
        Reply(text="Cancelled it."),
    )
    await collect(agent.run_turn(msg.session_key, "cancel my stretch reminder", inbound=msg))
    listed, cancelled = tool_results(fake)
    assert listed.startswith(f"#{entry.id} ") and "stretch" in listed
    assert cancelled == f"Cancelled #{entry.id}."
    assert await scheduler.entries("telegram:42") == []


async def test_reminders_and_cancel_commands_are_per_chat(
    fake: FakeOpenAI, setup: tuple[Agent, Scheduler, list[OutboundMessage]]
) -> None:
    agent, scheduler, _ = setup
    mine = inbound("x", chat="42")
    other = inbound("x", chat="43")
    entry = await scheduler.create(Target("telegram", "42"), "water plants", in_seconds=60)

    async def command(msg: InboundMessage, text: str) -> str:
        return text_of(await collect(agent.run_turn(msg.session_key, text, inbound=msg)))

    assert (await command(mine, "/reminders")).startswith(f"#{entry.id} ")
    assert await command(other, "/reminders") == "No reminders in this chat."
    refused = await command(other, f"/cancel {entry.id}")
    assert refused.startswith("error: ") and f"#{entry.id}" in refused
    assert await command(mine, f"/cancel {entry.id}") == f"Cancelled #{entry.id}."
    assert await command(mine, "/reminders") == "No reminders in this chat."
    assert fake.requests == []  # commands never reach the model


async def test_status_lists_the_tools(
    fake: FakeOpenAI, setup: tuple[Agent, Scheduler, list[OutboundMessage]]
) -> None:
    agent, _, _ = setup
    msg = inbound("/status")
    reply = text_of(await collect(agent.run_turn(msg.session_key, msg.text, inbound=msg)))
    assert "Tools: time, message, schedule" in reply


async def test_without_a_daemon_the_tool_says_so() -> None:
    tools = default_tools(["schedule"])
    msg = inbound("x")
    result = await tools.call(
        "schedule", json.dumps({"text": "x", "in_seconds": 5}), ToolContext("s", msg)
    )
    assert result.error and result.content.startswith("error: ") and "picobot run" in result.content


async def test_a_run_agent_entry_runs_a_turn_in_the_chats_session(
    fake: FakeOpenAI, setup: tuple[Agent, Scheduler, list[OutboundMessage]]
) -> None:
    agent, _, _ = setup
    fake.script(Reply(text="Three headlines."))
    assert await agent_answer(agent, "telegram:42", "summarise the news") == "Three headlines."
    assert fake.last_request["messages"][-1] == {"role": "user", "content": "summarise the news"}
    assert len(await agent.history("telegram:42")) == 2  # the session remembers it
    fake.script(Fail(401))
    with pytest.raises(RuntimeError, match="TurnFailed"):
        await agent_answer(agent, "telegram:42", "again")
