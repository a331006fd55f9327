"""Agent turns against the fake OpenAI server: replies, tools, steering, stop, sessions."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from picobot.agent.conversation import LIMIT_NOTICE, SKIPPED
from picobot.agent.demo import DEMO_LABEL, DemoLLM
from picobot.agent.openai_llm import OpenAILLM
from picobot.agent.tools import Tool, ToolContext, ToolRegistry, time_tool
from picobot.agent.turns import Agent
from picobot.config import AgentConfig
from picobot.core import events as ev
from tests.agent.conftest import MakeAgent, Running, collect, of_type, text_of
from tests.fakes.fake_openai import FakeOpenAI, Reply, ToolCall

S = "test:chat"


def roles(body: dict[str, Any]) -> list[str]:
    return [m["role"] for m in body["messages"]]


class Blocker:
    """A tool that waits until the test releases it (records that it started)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = False

    def tool(self) -> Tool:
        async def handler(args: dict[str, Any], ctx: ToolContext) -> str:
            self.started.set()
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
            return "slow done"

        return Tool("slow", "Takes a while.", handler)


async def boom(args: dict[str, Any], ctx: ToolContext) -> str:
    raise RuntimeError("tool exploded")


async def test_text_reply(fake: FakeOpenAI, agent: Agent) -> None:
    fake.script(Reply(text="Hello! How can I help?"))

    events = await collect(agent.run_turn(S, "hi"))

    assert isinstance(events[0], ev.TurnStarted) and events[0].session == S
    assert events[-1] == ev.TurnFinished("Hello! How can I help?")
    assert text_of(events) == "Hello! How can I help?"
    assert fake.last_request["messages"] == [
        {"role": "system", "content": AgentConfig().system_prompt},
        {"role": "user", "content": "hi"},
    ]
    assert await agent.history(S) == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
    ]


async def test_tool_call_round_trip(fake: FakeOpenAI, agent: Agent) -> None:
    fake.script(
        Reply(text="Let me look.", tool_calls=[ToolCall("time", {"timezone": "Asia/Tokyo"})]),
        Reply(text="It is late in Tokyo."),
    )

    events = await collect(agent.run_turn(S, "time in Tokyo?"))

    started, finished = of_type(events, ev.ToolStarted), of_type(events, ev.ToolFinished)
    assert [(s.name, s.arguments) for s in started] == [("time", {"timezone": "Asia/Tokyo"})]
    assert finished[0].call_id == started[0].call_id and not finished[0].error
    assert "+09:00" in finished[0].result
    # The tool result reached the model, paired with its call.
    second = fake.requests[1]
    assert roles(second) == ["system", "user", "assistant", "tool"]
    assert second["messages"][2]["tool_calls"][0]["function"]["name"] == "time"
    assert second["messages"][3]["tool_call_id"] == started[0].call_id
    assert "+09:00" in second["messages"][3]["content"]
    assert {t["function"]["name"] for t in fake.requests[0]["tools"]} == {
        "time",
        "message",
        "schedule",
    }
    # Text before and after the tool call both survive, separated, in deltas and final text.
    assert events[-1] == ev.TurnFinished("Let me look.\n\nIt is late in Tokyo.")
    assert text_of(events) == "Let me look.\n\nIt is late in Tokyo."


async def test_failing_tool_and_bad_arguments_become_error_results(
    fake: FakeOpenAI, make_agent: MakeAgent
) -> None:
    agent = await make_agent(tools=ToolRegistry([Tool("boom", "Fails.", boom), time_tool()]))
    fake.script(
        Reply(tool_calls=[ToolCall("boom"), ToolCall("time", '{"timezone": "Eur')]),
        Reply(text="Sorry, the tool failed."),
    )

    events = await collect(agent.run_turn(S, "go"))

    results = of_type(events, ev.ToolFinished)
    assert [r.error for r in results] == [True, True]
    assert "RuntimeError: tool exploded" in results[0].result
    assert "invalid JSON" in results[1].result
    assert events[-1] == ev.TurnFinished("Sorry, the tool failed.")
    tool_messages = [m for m in fake.requests[1]["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_messages] == [r.result for r in results]


async def test_max_tool_iterations_then_one_call_without_tools(
    fake: FakeOpenAI, make_agent: MakeAgent
) -> None:
    agent = await make_agent(max_tool_iterations=2)
    fake.default = lambda body: (
        Reply(tool_calls=[ToolCall("time")]) if "tools" in body else Reply(text="Giving up.")
    )

    events = await collect(agent.run_turn(S, "loop forever"))

    assert len(fake.requests) == 3
    assert ["tools" in r for r in fake.requests] == [True, True, False]
    assert len(of_type(events, ev.ToolFinished)) == 2
    assert events[-1] == ev.TurnFinished("Giving up.")


async def test_max_tool_iterations_without_final_text_says_so(
    fake: FakeOpenAI, make_agent: MakeAgent
) -> None:
    agent = await make_agent(max_tool_iterations=1)
    fake.script(Reply(tool_calls=[ToolCall("time")]), Reply(text=""))

    events = await collect(agent.run_turn(S, "loop"))

    assert events[-1] == ev.TurnFinished(LIMIT_NOTICE)
    assert (await agent.history(S))[-1] == {"role": "assistant", "content": LIMIT_NOTICE}


async def test_steering_skips_remaining_tools_and_injects_the_message(
    fake: FakeOpenAI, agent: Agent
) -> None:
    gate = asyncio.Event()
    fake.script(
        Reply(tool_calls=[ToolCall("time"), ToolCall("time"), ToolCall("time")], gate=gate),
        Reply(text="Noted, switching to your new question."),
    )
    run = Running(agent.run_turn(S, "what time is it?"))
    await fake.wait_until(lambda: fake.in_flight == 1, what="first stream held")

    assert agent.steer(S, "actually, never mind", message_id="m2")
    gate.set()
    events = await run.done()

    assert len(of_type(events, ev.ToolStarted)) == 1  # the first tool ran, the rest skipped
    assert of_type(events, ev.SteeringInjected) == [
        ev.SteeringInjected("actually, never mind", "m2")
    ]
    second = fake.requests[1]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant"] + ["tool"] * 3 + ["user"]
    assert [m["content"] for m in second[4:6]] == [SKIPPED, SKIPPED]
    assert second[-1] == {"role": "user", "content": "actually, never mind"}
    assert events[-1] == ev.TurnFinished("Noted, switching to your new question.")
    assert agent.queued(S) == 0


async def test_stop_aborts_closes_the_stream_and_rolls_back(fake: FakeOpenAI, agent: Agent) -> None:
    fake.script(Reply(text="first answer"))
    await collect(agent.run_turn(S, "first"))
    before = await agent.history(S)
    fake.script(
        Reply(tool_calls=[ToolCall("time")]),
        Reply(text="a very long second answer", gate=asyncio.Event(), gate_after=2),
    )
    run = Running(agent.run_turn(S, "second"))
    await run.wait_for(ev.TextDelta)  # mid-stream, after a tool call
    agent.steer(S, "queued meanwhile")

    reply = await collect(agent.run_turn(S, "/stop"))
    events = await run.done()

    assert reply[-1] == ev.TurnFinished("Stopped.")
    assert events[-1] == ev.TurnAborted("stopped")
    await fake.wait_cancelled(1)  # the in-flight stream was closed
    assert await agent.history(S) == before
    assert agent.queued(S) == 0 and not agent.is_running(S)
    # The next turn sees the history as it was before the aborted turn.
    fake.script(Reply(text="fresh"))
    await collect(agent.run_turn(S, "third"))
    assert roles(fake.last_request) == ["system", "user", "assistant", "user"]


async def test_stop_cancels_a_running_tool(fake: FakeOpenAI, make_agent: MakeAgent) -> None:
    blocker = Blocker()
    agent = await make_agent(tools=ToolRegistry([blocker.tool()]))
    fake.script(Reply(tool_calls=[ToolCall("slow")]))
    run = Running(agent.run_turn(S, "go"))
    await asyncio.wait_for(blocker.started.wait(), 5)

    assert await agent.stop(S)

    assert (await run.done())[-1] == ev.TurnAborted("stopped")
    assert blocker.cancelled
    assert await agent.history(S) == []


async def test_leaving_the_iteration_aborts_the_turn(fake: FakeOpenAI, agent: Agent) -> None:
    fake.script(Reply(text="streaming forever", gate=asyncio.Event(), gate_after=1))
    events = agent.run_turn(S, "hi")

    async for event in events:
        if isinstance(event, ev.TextDelta):
            break
    await events.aclose()  # type: ignore[attr-defined]

    await fake.wait_cancelled(1)
    assert not agent.is_running(S)


async def test_turns_of_one_session_run_one_at_a_time(fake: FakeOpenAI, agent: Agent) -> None:
    gate = asyncio.Event()
    fake.script(Reply(text="one", gate=gate), Reply(text="two"))
    first = Running(agent.run_turn(S, "1"))
    await fake.wait_requests(1)
    second = Running(agent.run_turn(S, "2"))
    await second.wait_for(ev.TurnStarted)

    assert len(fake.requests) == 1  # the second waits for the first
    gate.set()
    await first.done()
    await second.done()
    assert roles(fake.requests[1]) == ["system", "user", "assistant", "user"]
    assert fake.max_in_flight == 1


async def test_parallel_sessions_do_not_block_each_other(fake: FakeOpenAI, agent: Agent) -> None:
    gate = asyncio.Event()
    fake.script(Reply(text="slow", gate=gate), Reply(text="fast"))
    slow = Running(agent.run_turn("test:a", "1"))
    await fake.wait_requests(1)

    fast = await Running(agent.run_turn("test:b", "2")).done()

    assert fast[-1] == ev.TurnFinished("fast")
    assert not slow.task.done() and fake.max_in_flight == 2
    gate.set()
    assert (await slow.done())[-1] == ev.TurnFinished("slow")


async def test_max_parallel_turns_is_a_limit(fake: FakeOpenAI, make_agent: MakeAgent) -> None:
    agent = await make_agent(max_parallel_turns=1)
    gate = asyncio.Event()
    fake.script(Reply(text="slow", gate=gate), Reply(text="fast"))
    slow = Running(agent.run_turn("test:a", "1"))
    await fake.wait_requests(1)
    other = Running(agent.run_turn("test:b", "2"))
    await other.wait_for(ev.TurnStarted)

    assert len(fake.requests) == 1
    gate.set()
    await slow.done()
    assert (await other.done())[-1] == ev.TurnFinished("fast")
    assert fake.max_in_flight == 1


async def test_history_survives_a_restart(fake: FakeOpenAI, llm: OpenAILLM, tmp_path: Path) -> None:
    async with Agent(llm, data_dir=tmp_path) as first:
        await collect(first.run_turn(S, "my name is Ada"))

    async with Agent(llm, data_dir=tmp_path) as second:
        await collect(second.run_turn(S, "what is my name?"))
        history = await second.history(S)

    assert fake.last_request["messages"][1:] == [
        {"role": "user", "content": "my name is Ada"},
        {"role": "assistant", "content": "You said: my name is Ada"},
        {"role": "user", "content": "what is my name?"},
    ]
    assert len(history) == 4


async def test_context_is_trimmed_at_turn_boundaries(
    fake: FakeOpenAI, make_agent: MakeAgent
) -> None:
    agent = await make_agent(max_history_messages=5)
    fake.script(Reply(tool_calls=[ToolCall("time")]), Reply(text="It is noon."))
    await collect(agent.run_turn(S, "one"))  # 4 messages: user, assistant+call, tool, assistant
    await collect(agent.run_turn(S, "two"))  # 2 more: over the limit

    await collect(agent.run_turn(S, "three"))

    messages = fake.last_request["messages"]
    assert roles(fake.last_request) == ["system", "user", "assistant", "user"]
    assert [m["content"] for m in messages[1:]] == ["two", "You said: two", "three"]
    assert await agent.store.count(S) <= 5


async def test_new_starts_a_fresh_session(fake: FakeOpenAI, agent: Agent) -> None:
    await collect(agent.run_turn(S, "remember this"))

    reply = await collect(agent.run_turn(S, "/new"))
    await collect(agent.run_turn(S, "hello again"))

    assert reply[1:] == [
        ev.TextDelta("New conversation started."),
        ev.TurnFinished("New conversation started."),
    ]
    assert roles(fake.last_request) == ["system", "user"]
    assert len(fake.requests) == 2  # /new never reached the model


async def test_status_and_help_commands(fake: FakeOpenAI, agent: Agent) -> None:
    await collect(agent.run_turn(S, "hi"))

    status = (await collect(agent.run_turn(S, "/status@picobot")))[-1]
    help_ = (await collect(agent.run_turn(S, "/help")))[-1]
    unknown = await collect(agent.run_turn(S, "/weather Paris"))

    assert isinstance(status, ev.TurnFinished)
    assert "fake-model" in status.text and "2 messages" in status.text
    assert "Waiting messages: 0" in status.text
    assert isinstance(help_, ev.TurnFinished) and "/stop" in help_.text
    assert unknown[-1] == ev.TurnFinished("You said: /weather Paris")  # went to the model


async def test_demo_provider_still_works(tmp_path: Path) -> None:
    async with Agent(DemoLLM(delay=0), data_dir=tmp_path) as agent:
        events = await collect(agent.run_turn(S, "ping"))

    final = events[-1]
    assert isinstance(final, ev.TurnFinished)
    assert final.text.startswith(DEMO_LABEL) and "> ping" in final.text
    assert text_of(events) == final.text
