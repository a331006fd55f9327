"""Streaming by edits at a fixed interval, against the real dispatcher and an in-process
channel. Waits are on the channel's recorded calls; the interval is short but no assertion
depends on how fast the machine is (only upper bounds on counts)."""

import asyncio
import itertools
import math
from dataclasses import replace

from picobot.core import events as ev
from picobot.core.errors import Forbidden, RateLimited
from picobot.core.messages import InboundMessage, Kind, OutboundMessage, Sender
from picobot.outbound.door import Outbound
from picobot.outbound.streaming import STOPPED_NOTE, PieceReply, StreamingReply
from tests.fakes.memory_channel import EDITABLE, MemoryChannel

INTERVAL = 0.02


def setup(caps=EDITABLE) -> tuple[Outbound, MemoryChannel, InboundMessage]:
    channel = MemoryChannel(capabilities=caps)
    dispatcher = Outbound({"memory": channel})
    inbound = InboundMessage("memory", "c", Sender("u"), "question")
    return dispatcher, channel, inbound


def writer(dispatcher: Outbound, inbound: InboundMessage, **kw: object) -> StreamingReply:
    caps = dispatcher.channels["memory"].capabilities
    return StreamingReply(inbound, caps, dispatcher.deliver, interval=INTERVAL, **kw)  # type: ignore[arg-type]


async def test_partial_text_grows_then_final_text_is_exact_once() -> None:
    dispatcher, channel, inbound = setup()
    await dispatcher.deliver(
        OutboundMessage("memory", "c", "Thinking…", kind=Kind.ACCEPTED, in_reply_to=inbound.id)
    )
    reply = writer(dispatcher, inbound)
    words = [f"word{i} " for i in range(6)]
    for i, word in enumerate(words):
        await reply.feed(ev.TextDelta(word))
        shown = "".join(words[: i + 1]).strip()
        await channel.wait_for(lambda shown=shown: channel.visible("c") == [shown])
    await reply.feed(ev.TurnFinished("".join(words)))
    await reply.finish()
    final = "".join(words).strip()
    assert channel.visible("c") == [final]  # one message: the placeholder, edited
    [message] = channel.messages.values()
    assert message.history[0] == "Thinking…"
    for earlier in message.history[1:]:
        assert final.startswith(earlier)  # growing prefixes
    texts = [*message.history, message.text]
    assert all(a != b for a, b in itertools.pairwise(texts))  # no unchanged edit
    await dispatcher.aclose()


async def test_edits_are_bounded_by_the_interval() -> None:
    dispatcher, channel, inbound = setup()
    reply = writer(dispatcher, inbound)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(200):  # far more deltas than ticks
        await reply.feed(ev.TextDelta(f"t{i} "))
        await asyncio.sleep(0.001)
    duration = loop.time() - start
    await reply.feed(ev.TurnFinished(""))
    await reply.finish()
    sends_and_edits = [c for c in channel.calls if c[0] in ("send", "edit")]
    # Streaming flushes plus the one final edit.
    assert len(sends_and_edits) <= math.ceil(duration / INTERVAL) + 2
    assert reply.flushes <= math.ceil(duration / INTERVAL) + 1
    await dispatcher.aclose()


async def test_overflow_continues_in_a_new_message_at_a_fence_safe_point() -> None:
    dispatcher, channel, inbound = setup()  # limit: 100 characters
    reply = writer(dispatcher, inbound)
    text = "Intro line.\n\n```\n" + "".join(f"line {i}\n" for i in range(25)) + "```\n\nDone."
    for piece in [text[i : i + 7] for i in range(0, len(text), 7)]:
        await reply.feed(ev.TextDelta(piece))
        await asyncio.sleep(INTERVAL / 4)
    await reply.feed(ev.TurnFinished(text))
    await reply.finish()
    shown = channel.visible("c")
    assert len(shown) > 1
    assert all(len(m) <= 100 and m.count("```") % 2 == 0 for m in shown)
    # Nothing lost, nothing duplicated: every line appears exactly once.
    joined = "\n".join(shown)
    for i in range(25):
        assert joined.count(f"line {i}\n") == 1
    assert shown[-1].endswith("Done.")
    await dispatcher.aclose()


async def test_abort_keeps_what_was_shown_with_a_note() -> None:
    dispatcher, channel, inbound = setup()
    reply = writer(dispatcher, inbound)
    await reply.feed(ev.TextDelta("partial answer"))
    await channel.wait_for(lambda: channel.visible("c") == ["partial answer"])
    await reply.feed(ev.TurnAborted("stop"))
    await reply.finish()
    assert channel.visible("c") == [f"partial answer\n\n{STOPPED_NOTE}"]
    await dispatcher.aclose()


async def test_failure_before_anything_was_shown_sends_the_error() -> None:
    dispatcher, channel, inbound = setup()
    reply = writer(dispatcher, inbound)
    await reply.feed(ev.TurnFailed("⚠️ The model failed."))
    await reply.finish()
    assert channel.visible("c") == ["⚠️ The model failed."]
    await dispatcher.aclose()


async def test_first_send_failing_falls_back_to_one_whole_reply() -> None:
    dispatcher, channel, inbound = setup()
    channel.fail("send", Forbidden("flaky permission"))
    reply = writer(dispatcher, inbound)
    await reply.feed(ev.TextDelta("hello "))
    await channel.wait_for(lambda: channel.failures == [])  # the first send was tried
    await reply.feed(ev.TextDelta("world"))
    await reply.feed(ev.TurnFinished("hello world"))
    await reply.finish()
    assert channel.visible("c") == ["hello world"]
    await dispatcher.aclose()


async def test_rate_limited_edit_is_skipped_not_queued() -> None:
    dispatcher, channel, inbound = setup()
    reply = writer(dispatcher, inbound)
    await reply.feed(ev.TextDelta("one "))
    await channel.wait_for(lambda: channel.visible("c") == ["one"])
    channel.fail("edit", RateLimited(30))  # would stall the lane 30 s if it were queued
    await reply.feed(ev.TextDelta("two "))
    await channel.wait_for(lambda: channel.failures == [])
    await reply.feed(ev.TextDelta("three"))
    await channel.wait_for(lambda: channel.visible("c") == ["one two three"])
    await reply.feed(ev.TurnFinished("one two three"))
    await reply.finish()
    assert channel.visible("c") == ["one two three"]
    await dispatcher.aclose()


async def test_tool_progress_lines_join_the_stream_and_leave_the_final_text() -> None:
    dispatcher, channel, inbound = setup()
    reply = writer(dispatcher, inbound, tool_progress=True)
    await reply.feed(ev.TextDelta("Let me check."))
    await reply.feed(ev.ToolStarted("1", "time"))
    await channel.wait_for(lambda: any("🔧 time" in t for t in channel.visible("c")))
    await reply.feed(ev.TextDelta("It is noon."))
    await reply.feed(ev.TurnFinished("Let me check.It is noon."))
    await reply.finish()
    assert channel.visible("c") == ["Let me check.\n\nIt is noon."]
    await dispatcher.aclose()


async def test_non_editing_channel_gets_whole_pieces_in_order() -> None:
    dispatcher, channel, inbound = setup(replace(EDITABLE, can_edit=False))
    reply = PieceReply(inbound, dispatcher.deliver)
    await reply.feed(ev.TextDelta("Before the tool."))
    await reply.feed(ev.ToolStarted("1", "time"))
    await reply.feed(ev.ToolFinished("1", "time", "12:00"))
    await reply.feed(ev.TextDelta("After the tool."))
    await reply.feed(ev.TurnFinished("Before the tool.After the tool."))
    await reply.finish()
    assert channel.visible("c") == ["Before the tool.", "After the tool."]
    assert [c[0] for c in channel.calls] == ["send", "send"]
    await dispatcher.aclose()


async def test_writer_finished_without_events_only_cleans_up() -> None:
    # A steering message folded into a running turn: its writer just ends.
    dispatcher, channel, inbound = setup()
    await dispatcher.deliver(
        OutboundMessage("memory", "c", "Thinking…", kind=Kind.ACCEPTED, in_reply_to=inbound.id)
    )
    reply = writer(dispatcher, inbound)
    await reply.finish()
    assert channel.visible("c") == []
    await dispatcher.aclose()


async def test_shutdown_abort_sends_nothing_and_keeps_the_placeholder() -> None:
    # The turn runs again after the restart and edits the placeholder then.
    dispatcher, channel, inbound = setup()
    await dispatcher.deliver(
        OutboundMessage("memory", "c", "Thinking…", kind=Kind.ACCEPTED, in_reply_to=inbound.id)
    )
    reply = writer(dispatcher, inbound)
    await reply.feed(ev.TurnAborted(ev.SHUTDOWN))
    await reply.finish()
    await dispatcher.drain(5)
    assert channel.visible("c") == ["Thinking…"]
    assert dispatcher.placeholders.get(inbound.id) is not None
    await dispatcher.aclose()


async def test_the_end_of_a_turn_during_a_freeze_duplicates_nothing() -> None:
    """The turn ends while a freeze (past the limit) is still being delivered: the final reply
    is taken after it lands, so the frozen text is not sent a second time."""
    dispatcher, channel, inbound = setup()  # limit: 100 characters
    reply = writer(dispatcher, inbound)
    text = "Intro line.\n\n```\n" + "".join(f"line {i}\n" for i in range(25)) + "```\n\nDone."
    channel.hold["c"] = asyncio.Event()  # the platform is slow to answer the freeze
    await reply.feed(ev.TextDelta(text[:150]))
    await asyncio.wait_for(channel.gated.wait(), 5)  # the freeze is in flight
    await reply.feed(ev.TextDelta(text[150:]))
    ending = asyncio.create_task(reply.feed(ev.TurnFinished(text)))
    channel.hold["c"].set()
    await ending
    await reply.finish()
    joined = "\n".join(channel.visible("c"))
    for i in range(25):
        assert joined.count(f"line {i}\n") == 1
    assert joined.endswith("Done.")
    await dispatcher.aclose()


async def test_a_reply_that_ends_before_the_first_tick_needs_no_flush_task() -> None:
    dispatcher, channel, inbound = setup()
    reply = StreamingReply(inbound, EDITABLE, dispatcher.deliver, interval=3600)
    await reply.feed(ev.TextDelta("quick answer"))
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "stream flush"]
    await reply.feed(ev.TurnFinished("quick answer"))
    await reply.finish()
    assert channel.visible("c") == ["quick answer"]
    assert reply.flushes == 0  # shown once, whole, formatted
    await dispatcher.aclose()
