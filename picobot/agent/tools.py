"""Tools the model can call: a registry of JSON-schema functions, and the safe built-ins.

A tool never kills a turn: unknown names, invalid JSON arguments, missing required arguments
and exceptions raised by the tool all come back to the model as an error result it can read.
A tool may also return files (a `ToolOutput` with stored attachments: a generated image, an
MCP tool's image or document); the turn sends them to the chat.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from picobot.core.errors import ConfigError
from picobot.core.messages import Attachment, InboundMessage, Post, reply_to

log = logging.getLogger("picobot.tools")

Publish = Post  # the outbound door
MAX_RESULT_CHARS = 16_000  # a runaway tool result must not blow the context window


class ToolError(Exception):
    """Raised by a tool for an expected failure; the message is shown to the model as is."""


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Where a tool call happens: the session, and the chat message being answered (if any)."""

    session: str
    inbound: InboundMessage | None = None
    publish: Publish | None = None


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a call returns to the model. `images` (data: or https: URLs) go to the model as
    `image_url` parts of a user message after the tool messages (those carry text only);
    `attachments` (stored files) are sent to the chat."""

    content: str
    error: bool = False
    arguments: dict[str, Any] = field(default_factory=dict)
    images: tuple[str, ...] = ()
    attachments: tuple[Attachment, ...] = ()


# A handler returns text, or a `ToolResult` to mark an error or attach images or files.
Handler = Callable[[dict[str, Any], ToolContext], Awaitable["str | ToolResult"]]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    handler: Handler
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )

    def schema(self) -> dict[str, Any]:
        """The OpenAI `tools` entry for this tool."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.parameters),
            },
        }


def parse_arguments(text: str) -> dict[str, Any]:
    """The arguments object of a call; empty text means no arguments.

    :raises ToolError: if the text is not a JSON object.
    """
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ToolError(f"invalid JSON arguments ({exc.msg}); send a JSON object") from None
    except (ValueError, RecursionError) as exc:  # an integer too long, nesting too deep
        raise ToolError(f"unreadable JSON arguments ({exc}); send a JSON object") from None
    if not isinstance(value, dict):
        raise ToolError("arguments must be a JSON object")
    return value


class ToolRegistry:
    """Tools by name. `schemas()` is what the model sees; `call()` runs one call safely."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self._schemas: list[dict[str, Any]] | None = None  # made once per change of tools
        for tool in tools:
            self.register(tool)

    def register(self, tool: Tool) -> None:
        """:raises ValueError: if a tool with that name is already registered."""
        if tool.name in self._tools:
            raise ValueError(f"tool {tool.name!r} is already registered")
        self._tools[tool.name] = tool
        self._schemas = None

    def unregister(self, name: str) -> None:
        """Remove a tool (e.g. an MCP server's, when the server goes away); no error if absent."""
        self._tools.pop(name, None)
        self._schemas = None

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return list(self._tools)

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def schemas(self) -> list[dict[str, Any]]:
        """The `tools` of every model call (read-only: shared until the tools change)."""
        if self._schemas is None:
            self._schemas = [tool.schema() for tool in self._tools.values()]
        return self._schemas

    def select(self, names: Iterable[str]) -> ToolRegistry:
        """The registry restricted to `names` (config `agent.tools`), in that order.

        :raises ConfigError: naming `agent.tools` if a name is unknown.
        """
        chosen = []
        for name in names:
            if name not in self._tools:
                known = ", ".join(self._tools) or "none"
                raise ConfigError("agent.tools", f"unknown tool {name!r} (available: {known})")
            chosen.append(self._tools[name])
        return ToolRegistry(chosen)

    async def call(self, name: str, arguments: str, ctx: ToolContext) -> ToolResult:
        """Run one call; every failure becomes an error result for the model."""
        tool = self._tools.get(name)
        if tool is None:
            known = ", ".join(self._tools) or "none"
            return ToolResult(f"Error: unknown tool {name!r} (available: {known})", error=True)
        try:
            args = parse_arguments(arguments)
            missing = [r for r in tool.parameters.get("required", ()) if r not in args]
            if missing:
                raise ToolError(f"missing required argument(s): {', '.join(missing)}")
            output = await tool.handler(args, ctx)
        except ToolError as exc:
            return ToolResult(f"Error: {exc}", error=True)
        except Exception as exc:  # a buggy tool must not end the turn
            log.warning("tool %s failed: %r", name, exc, exc_info=True)
            return ToolResult(f"Error: {type(exc).__name__}: {exc}", error=True)
        result = output if isinstance(output, ToolResult) else ToolResult(output)
        content = result.content
        if len(content) > MAX_RESULT_CHARS:
            content = content[:MAX_RESULT_CHARS] + "\n[result truncated]"
        return ToolResult(content, result.error, args, result.images, result.attachments)


# -- built-in tools ------------------------------------------------------------------------


def time_tool(now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Tool:
    """`time`: the current date and time, in an optional IANA timezone (default UTC)."""

    async def handler(args: dict[str, Any], ctx: ToolContext) -> str:
        name = args.get("timezone") or "UTC"
        try:
            zone = ZoneInfo(str(name))
        except (ZoneInfoNotFoundError, ValueError):
            hint = "use an IANA name like Europe/Paris"
            raise ToolError(f"unknown timezone {name!r}; {hint}") from None
        local = now().astimezone(zone)
        return f"{local.isoformat(timespec='seconds')} ({local:%A}, {name})"

    return Tool(
        "time",
        "Get the current date and time.",
        handler,
        {
            "type": "object",
            "properties": {
                "timezone": {
                    "type": "string",
                    "description": "IANA timezone, e.g. Europe/Paris. Default: UTC.",
                }
            },
        },
    )


def message_tool() -> Tool:
    """`message`: send a separate message to the current chat (e.g. a progress note)."""

    async def handler(args: dict[str, Any], ctx: ToolContext) -> str:
        text = str(args.get("text", "")).strip()
        if not text:
            raise ToolError("text must not be empty")
        if ctx.inbound is None or ctx.publish is None:
            raise ToolError("there is no chat to send a message to here")
        await ctx.publish(reply_to(ctx.inbound, text))
        return "Message sent."

    return Tool(
        "message",
        "Send a message to the user in the current chat right away, separate from your reply.",
        handler,
        {
            "type": "object",
            "properties": {"text": {"type": "string", "description": "The message (Markdown)."}},
            "required": ["text"],
        },
    )


def builtin_tools() -> ToolRegistry:
    """Every built-in tool, without a daemon (`schedule` refuses then); `select()` the
    enabled ones. The daemon builds its own with a scheduler (see `agent.abilities`)."""
    # Imported here: these modules import this one.
    from picobot.agent.fetch import fetch_tool
    from picobot.agent.schedule.tool import schedule_tool

    return ToolRegistry([time_tool(), message_tool(), schedule_tool(None), fetch_tool()])


def default_tools(enabled: Iterable[str]) -> ToolRegistry:
    """The built-ins named in config `agent.tools`.

    :raises ConfigError: if a name is unknown.
    """
    return builtin_tools().select(enabled)
