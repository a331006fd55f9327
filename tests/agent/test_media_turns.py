"""Files in turns: a message's images as image_url parts, files returned by tools sent to the
chat, and files in a message that arrives mid-turn (steering) read too."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

from picobot.agent.media import AgentMedia
from picobot.agent.openai_llm import OpenAILLM
from picobot.agent.tools import Tool, ToolContext, ToolRegistry, ToolResult
from picobot.agent.turns import Agent
from picobot.config import AgentConfig
from picobot.core import events as ev
from picobot.core.messages import Attachment, InboundMessage, OutboundMessage, Sender
from picobot.media.inbound import MediaIntake
from picobot.media.store import MediaStore
from tests.agent.conftest import Running, collect, of_type
from tests.fakes.fake_openai import FakeOpenAI, Reply, ToolCall
from tests.media import samples

S = "web:chat"


class Outbox(list[OutboundMessage]):
    async def __call__(self, msg: OutboundMessage) -> None:
        self.append(msg)


async def media_agent(llm: OpenAILLM, tmp_path: Path, tools: ToolRegistry | None = None) -> Agent:
    store = MediaStore(tmp_path / "media")
    store.open()
    agent = Agent(
        llm,
        AgentConfig(),
        data_dir=tmp_path,
        tools=tools,
        media=AgentMedia(MediaIntake(store, {})),
    )
    await agent.open()
    return agent


def inbound(text: str, *files: Attachment) -> InboundMessage:
    return InboundMessage("web", "chat", Sender("u"), text, attachments=files)


def image_parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message["content"]
    return [p for p in content if p["type"] == "image_url"] if isinstance(content, list) else []


async def test_files_a_tool_returns_are_sent_to_the_chat(
    fake: FakeOpenAI, llm: OpenAILLM, tmp_path: Path
) -> None:
    store = MediaStore(tmp_path / "shots")
    store.open()
    shot = await store.put_bytes(samples.png(), name="screen.png")

    async def screenshot(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        return ToolResult("Took a screenshot.", attachments=(shot,))

    tools = ToolRegistry([Tool("screenshot", "Take a screenshot.", screenshot)])
    agent = await media_agent(llm, tmp_path, tools)
    sent = Outbox()
    fake.script(Reply(tool_calls=[ToolCall("screenshot")]), Reply(text="Done."))
    try:
        events = await collect(
            agent.run_turn(S, "show me", inbound=inbound("show me"), publish=sent)
        )
    finally:
        await agent.aclose()
    [msg] = sent
    assert msg.attachments == (shot,) and msg.chat_id == "chat"
    [finished] = of_type(events, ev.ToolFinished)
    assert finished.result == "Took a screenshot.\n[sent to the chat: screen.png]"
    assert fake.requests[1]["messages"][-1]["content"] == finished.result


async def test_an_image_sent_mid_turn_is_read(
    fake: FakeOpenAI, llm: OpenAILLM, tmp_path: Path
) -> None:
    agent = await media_agent(llm, tmp_path)
    assert agent.media is not None
    picture = await agent.media.store.put_bytes(samples.png(40, 30), name="late.png")
    gate = asyncio.Event()
    fake.script(Reply(tool_calls=[ToolCall("time")], gate=gate), Reply(text="Got both."))
    try:
        run = Running(agent.run_turn(S, "first", inbound=inbound("first")))
        await fake.wait_until(lambda: fake.in_flight == 1, what="first stream held")
        late = inbound("and this", picture)
        assert agent.steer(S, late.text, message_id=late.id, inbound=late)
        gate.set()
        events = await run.done()
    finally:
        await agent.aclose()
    assert events[-1] == ev.TurnFinished("Got both.")
    last = fake.requests[1]["messages"][-1]
    assert last["role"] == "user" and len(image_parts(last)) == 1
    assert "late.png" in last["content"][0]["text"] and "and this" in last["content"][0]["text"]


async def test_images_a_tool_returns_reach_the_model_and_the_chat(
    fake: FakeOpenAI, llm: OpenAILLM, tmp_path: Path
) -> None:
    """An MCP tool's image (a data: URL) goes to the model and, stored, to the chat."""
    data = base64.b64encode(samples.png(20, 10)).decode()

    async def chart(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
        return ToolResult(
            "[image 1: image/png, shown below]", images=(f"data:image/png;base64,{data}",)
        )

    tools = ToolRegistry([Tool("chart", "Draw a chart.", chart)])
    agent = await media_agent(llm, tmp_path, tools)
    sent = Outbox()
    fake.script(Reply(tool_calls=[ToolCall("chart")]), Reply(text="Here it is."))
    try:
        await collect(agent.run_turn(S, "chart", inbound=inbound("chart"), publish=sent))
    finally:
        await agent.aclose()
    [msg] = sent
    [image] = msg.attachments
    assert (image.mime, image.width, image.height) == ("image/png", 20, 10)
    last = fake.requests[1]["messages"][-1]
    assert last["role"] == "user" and len(image_parts(last)) == 1
    assert "also sent to the chat" in last["content"][0]["text"]
