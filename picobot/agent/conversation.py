"""One turn's conversation with the model: model calls and tool calls until it answers.

Steering is polled between calls (a message that arrived mid-turn joins the conversation);
a tool call list is cut short when steering arrives, the rest answered with a note.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

from picobot.agent.llm import LLM, ToolCall, Usage
from picobot.agent.llm import ReasoningDelta as LLMReasoning
from picobot.agent.llm import TextDelta as LLMText
from picobot.agent.steering import Queued, SteeringQueue
from picobot.agent.tools import ToolContext, ToolError, ToolRegistry, parse_arguments
from picobot.config import AgentConfig
from picobot.core import events as ev
from picobot.core.messages import Attachment, InboundMessage, Message, reply_to

SKIPPED = "Skipped due to queued user message."
LIMIT_NOTICE = "⚠️ I stopped after too many tool steps without reaching an answer."
SEPARATOR = "\n\n"  # between the texts of successive model calls in one reply

Emit = Callable[[ev.RunEvent], None]
ForModel = Callable[[Sequence[Message]], Awaitable[list[Message]]]
Prepare = Callable[[InboundMessage], Awaitable[Message]]  # a message with files -> user message
StoreImages = Callable[[Sequence[str]], Awaitable[tuple[Attachment, ...]]]  # data: URLs -> files


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


async def inject(
    items: Sequence[Queued], turn: list[Message], emit: Emit, prepare: Prepare | None = None
) -> None:
    """Steering messages join the turn as user messages (their files read by `prepare`)."""
    for item in items:
        if prepare is not None and item.inbound is not None and item.inbound.attachments:
            turn.append(await prepare(item.inbound))
        else:
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
        *,
        for_model: ForModel | None = None,
        store_images: StoreImages | None = None,
        prepare: Prepare | None = None,
    ) -> None:
        """`for_model` turns the history into what the API takes (stored image references
        become ``image_url`` parts) before each model call; `prepare` reads the files of a
        message that arrives mid-turn."""
        self.llm = llm
        self.for_model = for_model
        self.store_images = store_images
        self.prepare = prepare
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
                await inject(self.steering.take(), turn, self.emit, self.prepare)
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
        if self.for_model is not None:
            messages = await self.for_model(messages)
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
            content = result.content
            if result.attachments:
                content += await self._send_files(result.attachments)
            turn.append({"role": "tool", "tool_call_id": call.id, "content": content})
            images += result.images
            self.emit(ev.ToolFinished(call.id, call.name, content, result.error))
        if images:
            note = "Images from the tools:"
            if self.store_images is not None and (files := await self.store_images(images)):
                note = "Images from the tools (also sent to the chat):" + (
                    await self._send_files(files)
                )
            parts: list[dict[str, Any]] = [{"type": "text", "text": note}]
            parts += [{"type": "image_url", "image_url": {"url": url}} for url in images]
            turn.append({"role": "user", "content": parts})

    async def _send_files(self, files: tuple[Attachment, ...]) -> str:
        """Send a tool's files to the chat; a note for the model about what happened."""
        inbound, publish = self.ctx.inbound, self.ctx.publish
        if inbound is None or publish is None:
            return "\n[the files could not be sent: there is no chat here]"
        await publish(replace(reply_to(inbound, ""), attachments=files))
        names = ", ".join(a.name or str(a.kind) for a in files)
        return f"\n[sent to the chat: {names}]"
