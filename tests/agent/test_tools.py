"""The tool registry and the built-in tools."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from picobot.agent.tools import (
    Tool,
    ToolContext,
    ToolError,
    ToolRegistry,
    builtin_tools,
    default_tools,
    message_tool,
    parse_arguments,
    time_tool,
)
from picobot.core.errors import ConfigError
from picobot.core.messages import InboundMessage, OutboundMessage, Sender

CTX = ToolContext("test:1")
NOON = datetime(2026, 11, 3, 12, 0, 0, tzinfo=UTC)


async def echo(args: dict[str, Any], ctx: ToolContext) -> str:
    return json.dumps(args)


async def boom(args: dict[str, Any], ctx: ToolContext) -> str:
    raise RuntimeError("disk on fire")


def registry() -> ToolRegistry:
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}
    return ToolRegistry([Tool("echo", "Echo.", echo, schema), Tool("boom", "Fails.", boom)])


def test_schemas_are_openai_function_tools() -> None:
    schemas = registry().schemas()

    assert [s["function"]["name"] for s in schemas] == ["echo", "boom"]
    assert schemas[0]["type"] == "function"
    assert schemas[0]["function"]["parameters"]["required"] == ["x"]
    assert schemas[1]["function"]["parameters"] == {"type": "object", "properties": {}}


def test_schemas_follow_tools_that_come_and_go() -> None:
    tools = registry()
    assert len(tools.schemas()) == 2
    tools.register(Tool("late", "An MCP server's.", echo))
    assert [s["function"]["name"] for s in tools.schemas()] == ["echo", "boom", "late"]
    tools.unregister("echo")
    assert [s["function"]["name"] for s in tools.schemas()] == ["boom", "late"]


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="already registered"):
        ToolRegistry([Tool("a", "", echo), Tool("a", "", echo)])


def test_config_selects_tools_and_rejects_unknown_names() -> None:
    assert default_tools(["time"]).names() == ["time"]
    assert default_tools([]).schemas() == []
    assert set(builtin_tools().names()) >= {"time", "message"}
    with pytest.raises(ConfigError) as info:
        default_tools(["time", "shell"])
    assert info.value.path == "agent.tools" and "shell" in str(info.value)


async def test_call_returns_the_result() -> None:
    result = await registry().call("echo", '{"x": 1}', CTX)

    assert (result.content, result.error) == ('{"x": 1}', False)


@pytest.mark.parametrize(
    ("name", "arguments", "needle"),
    [
        ("echo", '{"x": ', "invalid JSON"),
        ("echo", "[1, 2]", "JSON object"),
        ("echo", "{}", "missing required argument(s): x"),
        ("boom", "{}", "RuntimeError: disk on fire"),
        ("nope", "{}", "unknown tool 'nope'"),
    ],
)
async def test_failures_become_error_results(name: str, arguments: str, needle: str) -> None:
    result = await registry().call(name, arguments, CTX)

    assert result.error
    assert result.content.startswith("Error:") and needle in result.content


async def test_empty_arguments_mean_none() -> None:
    result = await registry().call("boom", "", CTX)

    assert "disk on fire" in result.content  # reached the handler


async def test_huge_results_are_truncated() -> None:
    async def big(args: dict[str, Any], ctx: ToolContext) -> str:
        return "x" * 100_000

    result = await ToolRegistry([Tool("big", "", big)]).call("big", "{}", CTX)

    assert len(result.content) < 20_000 and result.content.endswith("[result truncated]")


async def test_time_tool_in_a_timezone() -> None:
    tools = ToolRegistry([time_tool(now=lambda: NOON)])

    utc = await tools.call("time", "{}", CTX)
    paris = await tools.call("time", '{"timezone": "Europe/Paris"}', CTX)
    bad = await tools.call("time", '{"timezone": "Mars/Olympus"}', CTX)

    assert utc.content == "2026-11-03T12:00:00+00:00 (Tuesday, UTC)"
    assert paris.content == "2026-11-03T13:00:00+01:00 (Tuesday, Europe/Paris)"
    assert bad.error and "unknown timezone 'Mars/Olympus'" in bad.content


async def test_message_tool_publishes_a_reply_to_the_current_chat() -> None:
    sent: list[OutboundMessage] = []

    async def publish(msg: OutboundMessage) -> None:
        sent.append(msg)

    inbound = InboundMessage("telegram", "42", Sender("7"), "hi", thread="t1")
    tools = ToolRegistry([message_tool()])

    ok = await tools.call("message", '{"text": "On it!"}', ToolContext("s", inbound, publish))
    nowhere = await tools.call("message", '{"text": "x"}', CTX)

    assert ok.content == "Message sent." and not ok.error
    assert [(m.channel, m.chat_id, m.thread, m.text) for m in sent] == [
        ("telegram", "42", "t1", "On it!")
    ]
    assert sent[0].in_reply_to == inbound.id
    assert nowhere.error and "no chat" in nowhere.content


def test_tool_error_is_an_exception() -> None:
    assert issubclass(ToolError, Exception)


@pytest.mark.parametrize(
    "arguments",
    ['{"a": ' + "1" * 5000 + "}", "[" * 100_000 + "]" * 100_000],
    ids=["integer too long", "nested too deep"],
)
def test_unreadable_arguments_are_a_tool_error_not_a_crash(arguments: str) -> None:
    with pytest.raises(ToolError, match="JSON"):
        parse_arguments(arguments)
