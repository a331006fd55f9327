"""One turn's conversation with the model: model calls and tool calls until it answers.

Steering is polled between calls (a message that arrived mid-turn joins the conversation);
a tool call list is cut short when steering arrives, the rest answered with a note.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from picobot.agent.llm import LLM, ToolCall, Usage
from picobot.agent.llm import ReasoningDelta as LLMReasoning
from picobot.agent.llm import TextDelta as LLMText
from picobot.agent.steering import Queued, SteeringQueue
from picobot.agent.tools import ToolContext, ToolError, ToolRegistry, parse_arguments
from picobot.config import AgentConfig
from picobot.core import events as ev
from picobot.core.messages import Message

SKIPPED = "Skipped due to queued user message."
LIMIT_NOTICE = "⚠️ I stopped after too many tool steps without reaching an answer."
SEPARATOR = "\n\n"  # between the texts of successive model calls in one reply

Emit = Callable[[ev.RunEvent], None]


IMAGE_DROPPED = "[an image from a tool; not kept in the history]"


def for_history(messages: list[Message]) -> list[Message]:
    """`messages` as the session store keeps them: tool images (megabytes of base64 each)
    are seen by the model in their turn only, then replaced by a note."""
    kept: list[Message] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            parts = [
                {"type": "text", "text": IMAGE_DROPPED} if p.get("type") == "image_url" else p
                for p in content
            ]
            message = {**message, "content": parts}
        kept.append(message)
    return kept


def inject(items: Sequence[Queued], turn: list[Message], emit: Emit) -> None:
    """Steering messages join the turn as user messages."""
    for item in items:
        turn.append({"role": "user", "content": item.text})
        emit(ev.SteeringInjected(item.text, item.message_id))


class Conversation:
    """The model/tool loop of one turn; `run()` returns the reply text."""

    def __init__(
        self,
        llm: LLM,
        tools: ToolRegistry,
        config: AgentConfig,
        steering: SteeringQueue,
        ctx: ToolContext,
        emit: Emit,
    ) -> None:
        self.llm = llm
        self.tools = tools
        self.config = config
        self.steering = steering
        self.ctx = ctx
        self.emit = emit
        self._parts: list[str] = []  # every text delta of the turn: the full reply
        self.tokens = (0, 0)  # (prompt, completion), summed over the turn's model calls

    async def run(self, history: list[Message], turn: list[Message], poll_first: bool) -> str:
        system: Message = {"role": "system", "content": self.config.system_prompt}
        schemas = self.tools.schemas() or None
        iteration = 0
        while True:
            if iteration or poll_first:
                inject(self.steering.take(), turn, self.emit)
            limit_hit = iteration >= self.config.max_tool_iterations
            tools = None if limit_hit else schemas  # the last call: no tools
            text, calls = await self._complete([system, *history, *turn], tools)
            if tools is None:
                calls = []  # a model that calls tools it was not offered is not obeyed
            if not calls and limit_hit and not text.strip():
                text = self._say(LIMIT_NOTICE)
            message: Message = {"role": "assistant", "content": text}
            if calls:
                message["content"] = text or None
                message["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments},
                    }
                    for c in calls
                ]
            turn.append(message)
            if not calls:
                return "".join(self._parts)
            await self._run_tools(calls, turn)
            iteration += 1

    async def _complete(
        self, messages: list[Message], tools: list[dict[str, Any]] | None
    ) -> tuple[str, list[ToolCall]]:
        """One model call: streams text out as it comes; returns its text and tool calls."""
        own: list[str] = []
        calls: list[ToolCall] = []
        stream = self.llm.stream(messages, tools)
        try:
            async for event in stream:
                if isinstance(event, LLMText) and event.text:
                    if not own and "".join(self._parts).strip():
                        self._parts.append(SEPARATOR)
                        self.emit(ev.TextDelta(SEPARATOR))
                    own.append(event.text)
                    self._parts.append(event.text)
                    self.emit(ev.TextDelta(event.text))
                elif isinstance(event, LLMReasoning) and event.text:
                    self.emit(ev.ReasoningDelta(event.text))
                elif isinstance(event, ToolCall):
                    calls.append(event)
                elif isinstance(event, Usage):
                    prompt, completion = self.tokens
                    self.tokens = (
                        prompt + event.prompt_tokens,
                        completion + event.completion_tokens,
                    )
        finally:
            await stream.aclose()  # closes the HTTP stream on abort
        return "".join(own), calls

    def _say(self, text: str) -> str:
        if "".join(self._parts).strip():
            self._parts.append(SEPARATOR)
            self.emit(ev.TextDelta(SEPARATOR))
        self._parts.append(text)
        self.emit(ev.TextDelta(text))
        return text

    async def _run_tools(self, calls: list[ToolCall], turn: list[Message]) -> None:
        """One after another; queued steering skips the rest.

        Images from tool results follow the tool messages as one user message: Chat
        Completions tool messages carry text only."""
        images: list[str] = []
        for i, call in enumerate(calls):
            if i and self.steering:
                turn += [
                    {"role": "tool", "tool_call_id": c.id, "content": SKIPPED} for c in calls[i:]
                ]
                break
            try:
                args = parse_arguments(call.arguments)
            except ToolError:
                args = {}
            self.emit(ev.ToolStarted(call.id, call.name, args))
            result = await self.tools.call(call.name, call.arguments, self.ctx)
            turn.append({"role": "tool", "tool_call_id": call.id, "content": result.content})
            images += result.images
            self.emit(ev.ToolFinished(call.id, call.name, result.content, result.error))
        if images:
            parts: list[dict[str, Any]] = [{"type": "text", "text": "Images from the tools:"}]
            parts += [{"type": "image_url", "image_url": {"url": url}} for url in images]
            turn.append({"role": "user", "content": parts})
