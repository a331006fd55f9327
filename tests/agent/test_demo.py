"""The demo model through the real agent and the real tool registry: each scripted path."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from picobot.agent.demo import DEMO_LABEL, HOW_TO, LONG_MIN_CHARS, DemoLLM
from picobot.agent.tools import ToolRegistry, builtin_tools, message_tool, time_tool
from picobot.agent.turns import Agent
from picobot.core import events as ev
from picobot.text.split import split_markdown
from tests.agent.conftest import collect, of_type, text_of

S = "demo:chat"
NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def registry() -> ToolRegistry:
    """The built-in tools as the daemon registers them, with a fixed clock."""
    tools = builtin_tools()
    assert {"time", "message"} <= set(tools.names())
    return ToolRegistry([time_tool(now=lambda: NOON), message_tool()])


async def turn(tmp_path: Path, text: str, tools: ToolRegistry | None = None) -> list[ev.RunEvent]:
    async with Agent(DemoLLM(delay=0), data_dir=tmp_path, tools=tools or registry()) as agent:
        return await collect(agent.run_turn(S, text))


async def test_a_time_question_calls_the_real_time_tool_and_answers_from_it(
    tmp_path: Path,
) -> None:
    events = await turn(tmp_path, "What time is it? Use the time tool.")

    started, finished = of_type(events, ev.ToolStarted), of_type(events, ev.ToolFinished)
    assert [(s.name, s.arguments) for s in started] == [("time", {})]
    assert [(f.name, f.error) for f in finished] == [("time", False)]
    assert finished[0].result == "2026-11-30T12:00:00+00:00 (Monday, UTC)"  # the tool's own
    final = events[-1]
    assert isinstance(final, ev.TurnFinished)
    assert final.text.startswith(DEMO_LABEL) and finished[0].result in final.text


async def test_a_timezone_in_the_question_goes_to_the_tool(tmp_path: Path) -> None:
    events = await turn(tmp_path, "what's the date in Asia/Tokyo today?")

    assert [s.arguments for s in of_type(events, ev.ToolStarted)] == [{"timezone": "Asia/Tokyo"}]
    result = of_type(events, ev.ToolFinished)[0].result
    assert result == "2026-11-30T21:00:00+09:00 (Monday, Asia/Tokyo)"
    assert result in text_of(events)


async def test_without_the_time_tool_it_says_how_to_enable_it(tmp_path: Path) -> None:
    events = await turn(tmp_path, "what time is it?", builtin_tools().select(["message"]))

    assert of_type(events, ev.ToolStarted) == []
    assert "`agent.tools`" in text_of(events)


@pytest.mark.parametrize("ask", ["show me a demo", "Markdown please", "some code?"])
async def test_showcase_has_heading_list_table_and_code(tmp_path: Path, ask: str) -> None:
    events = await turn(tmp_path, ask)

    assert of_type(events, ev.ToolStarted) == []  # offered the real tools, calls none
    text = text_of(events)
    assert "\n## " in text and "\n1. " in text and "\n2. " in text
    assert "\n|----------|" in text and "```python\n" in text
    assert events[-1] == ev.TurnFinished(text)


async def test_long_is_split_on_every_platform(tmp_path: Path) -> None:
    events = await turn(tmp_path, "give me something long")

    text = text_of(events)
    assert len(text) > LONG_MIN_CHARS and of_type(events, ev.ToolStarted) == []
    for limit in (4096, 2000):  # Telegram, Discord
        assert len(split_markdown(text, limit)) >= 2


async def test_anything_else_says_it_is_a_demo_and_how_to_connect(tmp_path: Path) -> None:
    events = await turn(tmp_path, "hello there\n```\nx = 1\n```")

    text = text_of(events)
    assert text.startswith(DEMO_LABEL) and "> hello there" in text and "> x = 1" in text
    assert "> ```" not in text  # a fence in the quote would swallow the rest
    assert "demo model" in text and text.endswith(HOW_TO)
    assert of_type(events, ev.ToolStarted) == []
