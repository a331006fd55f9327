"""WebChatChannel without a daemon: events to the broker, the writer, stray sends."""

from __future__ import annotations

import asyncio

import pytest

from channels.webchat_channel import WebChatChannel
from picobot.config import WebConfig
from picobot.core import events as ev
from picobot.core.channel import Rendered, Services
from picobot.core.messages import InboundMessage, Kind, OutboundMessage, Sender
from picobot.webui.broker import Event, Subscription

TIMEOUT = 5.0


async def drain(sub: Subscription) -> list[Event]:
    async with asyncio.timeout(TIMEOUT):
        return [e async for e in sub]


async def test_events_reach_the_run_and_the_writer_ends_it() -> None:
    accepted: list[InboundMessage] = []
    submitted: list[OutboundMessage] = []

    async def sink(msg: InboundMessage) -> None:
        accepted.append(msg)

    async def post(msg: OutboundMessage) -> None:
        submitted.append(msg)

    channel = WebChatChannel(WebConfig(), sink, Services(post=post))
    run_id = await channel.accept("hi", "s1")
    msg = accepted[0]
    assert (msg.id, msg.channel, msg.chat_id, msg.sender.id) == (run_id, "web", "s1", "web")
    sub = channel.broker.subscribe(run_id)
    elsewhere = InboundMessage("telegram", "s1", Sender("1"), "x", id=run_id)
    channel.on_run_event(elsewhere, ev.TextDelta("not for the web chat"))
    for event in (
        ev.TurnStarted("t", msg.session_key),
        ev.ToolStarted("c1", "time", {}),
        ev.ToolFinished("c1", "time", "x" * 5000),
        ev.TextDelta("hel"),
        ev.TextDelta("lo"),
        ev.TurnFinished("hello"),
    ):
        channel.on_run_event(msg, event)
    writer = channel.make_writer(msg)
    await writer.feed(ev.TurnFinished("hello"))  # shows nothing: the listener did
    await writer.finish()
    events = await drain(sub)
    assert [e.name for e in events] == [
        "turn_started",
        "tool_started",
        "tool_finished",
        "text_delta",
        "text_delta",
        "turn_finished",
        "done",
    ]
    assert len(events[2].data["result"]) == 2000
    # The dispatcher only gets `done`, closing what the intake's `accepted` opened.
    assert [(m.kind, m.text, m.in_reply_to) for m in submitted] == [(Kind.DONE, "", run_id)]


async def test_stray_sends_become_notices_and_edits_do_nothing() -> None:
    async def sink(msg: InboundMessage) -> None:
        return None

    channel = WebChatChannel(WebConfig(), sink)
    run_id = await channel.accept("hi", "s1")
    other = await channel.accept("hi", "s2")
    sub, quiet = channel.broker.subscribe(run_id), channel.broker.subscribe(other)
    message_id = await channel.send("s1", Rendered("slow down", None, "slow down"))
    assert message_id
    await channel.edit("s1", message_id, Rendered("x", None, "x"))
    await channel.delete("s1", message_id)
    channel.broker.finish(run_id)
    channel.broker.finish(other)
    assert [(e.name, e.data) for e in await drain(sub)] == [
        ("notice", {"text": "slow down"}),
        ("done", {}),
    ]
    assert [e.name for e in await drain(quiet)] == ["done"]


async def test_a_refused_message_leaves_no_run() -> None:
    class Closed(Exception):
        pass

    async def sink(msg: InboundMessage) -> None:
        raise Closed

    channel = WebChatChannel(WebConfig(), sink)
    with pytest.raises(Closed):
        await channel.accept("hi", "s1")
    assert len(channel.broker) == 0
