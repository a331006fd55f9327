"""The dispatcher end to end with an in-process channel: lanes, splitting, retries,
placeholders. No wall-clock timing: tests wait on the channel's recorded calls."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from picobot.core.channel import Rate, RateBudget
from picobot.core.errors import (
    ChannelTimeout,
    ChatMigrated,
    Forbidden,
    FormattingRejected,
    RateLimited,
)
from picobot.core.messages import Kind, OutboundMessage
from picobot.core.retry import RetryPolicy
from picobot.outbound.door import DELIVERY_FAILED_NOTE, DispatchSettings, Outbound
from picobot.outbound.placeholders import Placeholders
from picobot.outbound.ratelimit import RateLimits
from tests.fakes.memory_channel import EDITABLE, MemoryChannel


async def no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


def make(caps=EDITABLE, retry: RetryPolicy | None = None) -> tuple[Outbound, MemoryChannel]:
    channel = MemoryChannel(capabilities=caps)
    settings = DispatchSettings(retry=retry or RetryPolicy(sleep=no_sleep))
    return Outbound({"memory": channel}, settings), channel


def out(chat: str, text: str, **kw: object) -> OutboundMessage:
    return OutboundMessage("memory", chat, text, **kw)  # type: ignore[arg-type]


async def test_order_is_kept_within_a_chat() -> None:
    dispatcher, channel = make()
    futures = [await dispatcher.post(out("a", f"m{i}")) for i in range(20)]
    await asyncio.gather(*futures)
    assert channel.visible("a") == [f"m{i}" for i in range(20)]
    await dispatcher.aclose()


async def test_a_chat_in_flood_wait_does_not_delay_another_chat() -> None:
    # Chat "a" is told to wait 20 s; the real asyncio.sleep would hold its lane that long.
    dispatcher, channel = make(retry=RetryPolicy())
    channel.fail("send", RateLimited(20), chat_id="a")
    waiting = await dispatcher.post(out("a", "for a"))
    await dispatcher.deliver(out("b", "for b"))
    assert channel.visible("b") == ["for b"]
    assert not waiting.done() and channel.visible("a") == []
    await dispatcher.aclose()
    assert waiting.cancelled()


async def test_long_text_is_split_without_breaking_code_blocks() -> None:
    dispatcher, channel = make()
    text = "Intro paragraph.\n\n```python\n" + "\n".join(f"x = {i}" for i in range(30)) + "\n```"
    ids = await dispatcher.deliver(out("a", text))
    shown = channel.visible("a")
    assert len(ids) == len(shown) > 1
    assert all(len(chunk) <= EDITABLE.max_length for chunk in shown)
    assert all(chunk.count("```") % 2 == 0 for chunk in shown)
    await dispatcher.aclose()


async def test_transient_errors_are_retried_then_delivered() -> None:
    dispatcher, channel = make()
    channel.fail("send", ChannelTimeout("dropped"), times=2)
    assert await dispatcher.deliver(out("a", "hello"))
    assert channel.visible("a") == ["hello"]
    await dispatcher.aclose()


async def test_formatting_rejected_is_resent_as_plain_text() -> None:
    dispatcher, channel = make(replace(EDITABLE, format="telegram_html"))
    channel.fail("send", FormattingRejected("can't parse entities"))
    await dispatcher.deliver(out("a", "**bold**"))
    [sent] = channel.messages.values()
    assert sent.text == "bold" and sent.parse_mode is None
    await dispatcher.aclose()


async def test_chat_migration_resends_to_the_new_id_and_remembers_it() -> None:
    dispatcher, channel = make()
    channel.fail("send", ChatMigrated("-100"), chat_id="-1")
    await dispatcher.deliver(out("-1", "first"))
    await dispatcher.deliver(out("-1", "second"))
    assert channel.visible("-100") == ["first", "second"]
    await dispatcher.aclose()


async def test_placeholder_is_edited_into_the_reply() -> None:
    dispatcher, channel = make()
    await dispatcher.deliver(out("a", "Thinking…", kind=Kind.ACCEPTED, in_reply_to="in1"))
    await dispatcher.deliver(out("a", "The answer", in_reply_to="in1"))
    await dispatcher.deliver(out("a", "", kind=Kind.DONE, in_reply_to="in1"))
    assert channel.visible("a") == ["The answer"]
    [message] = channel.messages.values()
    assert message.history == ["Thinking…"]
    assert channel.typing_calls  # typing started with the placeholder
    assert len(dispatcher.placeholders) == 0
    await dispatcher.aclose()


async def test_unused_placeholder_is_removed_when_the_turn_ends() -> None:
    dispatcher, channel = make()
    await dispatcher.deliver(out("a", "Thinking…", kind=Kind.ACCEPTED, in_reply_to="in1"))
    await dispatcher.deliver(out("a", "", kind=Kind.DONE, in_reply_to="in1"))
    assert channel.visible("a") == []
    await dispatcher.aclose()


async def test_markers_that_show_nothing_take_no_lane() -> None:
    # No typing, no placeholder: ACCEPTED and DONE would do nothing on a lane.
    dispatcher, channel = make(replace(EDITABLE, can_type=False))
    await dispatcher.deliver(out("a", "", kind=Kind.ACCEPTED, in_reply_to="in1"))
    assert dispatcher.statistics()["lanes"] == 0
    await dispatcher.deliver(out("a", "The answer", in_reply_to="in1"))
    await dispatcher.deliver(out("a", "", kind=Kind.DONE, in_reply_to="in1"))
    assert channel.visible("a") == ["The answer"]
    assert channel.calls == [("send", "a", "The answer")]
    await dispatcher.aclose()


async def test_done_after_the_reply_took_the_placeholder_takes_no_lane() -> None:
    dispatcher, channel = make()
    await dispatcher.deliver(out("a", "Thinking…", kind=Kind.ACCEPTED, in_reply_to="in1"))
    await dispatcher.deliver(out("a", "The answer", in_reply_to="in1"))
    [entry] = [dispatcher.placeholders.get("in1")]
    assert entry is not None and entry.typing is not None  # typing until the turn ends
    lanes = dispatcher.statistics()["lanes"]
    done = await dispatcher.post(out("a", "", kind=Kind.DONE, in_reply_to="in1"))
    assert done.done() and dispatcher.statistics()["lanes"] == lanes  # no job was queued
    assert len(dispatcher.placeholders) == 0 and entry.typing is None  # typing stopped
    assert channel.visible("a") == ["The answer"]
    await dispatcher.aclose()


async def test_done_follows_a_placeholder_still_queued_on_the_lane() -> None:
    # The lane is held, so the placeholder's entry does not exist yet when DONE is posted:
    # DONE must still queue behind it and remove the placeholder.
    dispatcher, channel = make(replace(EDITABLE, can_type=False))
    channel.hold["a"] = gate = asyncio.Event()
    accepted = await dispatcher.post(out("a", "Thinking…", kind=Kind.ACCEPTED, in_reply_to="in1"))
    done = await dispatcher.post(out("a", "", kind=Kind.DONE, in_reply_to="in1"))
    gate.set()
    await asyncio.gather(accepted, done)
    assert channel.visible("a") == []
    assert [op for op, _, _ in channel.calls] == ["send", "delete"]
    assert len(dispatcher.placeholders) == 0
    await dispatcher.aclose()


async def test_failed_reply_replaces_the_placeholder_with_a_note() -> None:
    dispatcher, channel = make()
    await dispatcher.deliver(out("a", "Thinking…", kind=Kind.ACCEPTED, in_reply_to="in1"))
    channel.fail("edit", Forbidden("no rights"))
    channel.fail("send", Forbidden("no rights"))
    with pytest.raises(Forbidden):
        await dispatcher.deliver(out("a", "reply", in_reply_to="in1"))
    assert channel.visible("a") == [DELIVERY_FAILED_NOTE]
    await dispatcher.aclose()


async def test_gone_placeholder_falls_back_to_a_new_message() -> None:
    dispatcher, channel = make()
    await dispatcher.deliver(out("a", "Thinking…", kind=Kind.ACCEPTED, in_reply_to="in1"))
    channel.fail("edit", Forbidden("message to edit not found"))
    await dispatcher.deliver(out("a", "reply", in_reply_to="in1"))
    assert channel.visible("a")[-1] == "reply"
    await dispatcher.aclose()


async def test_droppable_edit_is_skipped_when_rate_limited() -> None:
    dispatcher, channel = make()
    [message_id] = await dispatcher.deliver(out("a", "part"))
    channel.fail("edit", RateLimited(5))
    skipped = await dispatcher.deliver(out("a", "part two", edit_of=message_id, droppable=True))
    assert skipped == []
    done = await dispatcher.deliver(out("a", "part two", edit_of=message_id, droppable=True))
    assert done == [message_id]
    assert channel.visible("a") == ["part two"]
    await dispatcher.aclose()


async def test_janitor_expires_a_placeholder_no_turn_closed() -> None:
    now = [0.0]
    from picobot.outbound.placeholders import Placeholders

    channel = MemoryChannel()
    dispatcher = Outbound(
        {"memory": channel},
        DispatchSettings(typing_ttl=10, placeholder_ttl=20),
        Placeholders(clock=lambda: now[0]),
    )
    await dispatcher.deliver(out("a", "Thinking…", kind=Kind.ACCEPTED, in_reply_to="lost"))
    now[0] = 30.0
    await dispatcher.sweep_once()
    await channel.wait_for(lambda: channel.visible("a") == [])
    assert len(dispatcher.placeholders) == 0
    await dispatcher.aclose()


async def test_drain_waits_for_queued_messages() -> None:
    dispatcher, channel = make()
    channel.hold["a"] = gate = asyncio.Event()
    for i in range(3):
        await dispatcher.post(out("a", f"m{i}"))
    assert not await dispatcher.drain(0.05)
    gate.set()
    assert await dispatcher.drain(5)
    assert channel.visible("a") == ["m0", "m1", "m2"]
    await dispatcher.aclose()


async def test_channels_added_after_the_dispatcher_was_made_are_served() -> None:
    # The daemon creates the dispatcher first and fills its channel map at startup.
    channels: dict[str, MemoryChannel] = {}
    dispatcher = Outbound(channels)  # type: ignore[arg-type]
    channels["memory"] = channel = MemoryChannel()
    await dispatcher.deliver(out("a", "late"))
    assert channel.visible("a") == ["late"]
    await dispatcher.aclose()


class WatchedBudget(RateLimits):
    """The real budget; `asked` is set each time a typing indicator asked for spare room."""

    def __init__(self, budget: RateBudget) -> None:
        super().__init__(budget)
        self.asked = asyncio.Event()

    @contextlib.asynccontextmanager
    async def try_spare(self, chat_id: str) -> AsyncIterator[bool]:
        async with super().try_spare(chat_id) as spare:
            yield spare
        self.asked.set()


async def test_typing_takes_only_spare_budget_so_it_never_delays_a_reply() -> None:
    # A burst to 300 chats once sent 300 indicators before its first reply.
    channel = MemoryChannel(capabilities=replace(EDITABLE, typing_interval=60))
    budget = WatchedBudget(RateBudget(overall=Rate.per_window(4, 60.0)))
    registry = Placeholders()
    for chat in ("a", "b", "c"):  # replies took 3 of the 4 slots
        assert await budget.try_acquire(chat)
    registry.open("in1", channel, "d", None, budget)
    await asyncio.wait_for(budget.asked.wait(), 5)
    assert channel.typing_calls == []
    assert await budget.try_acquire("e")  # the last slot is still there for a reply

    budget = WatchedBudget(RateBudget(overall=Rate.per_window(4, 60.0)))
    registry.open("in2", channel, "d", None, budget)
    await asyncio.wait_for(budget.asked.wait(), 5)
    assert channel.typing_calls == ["d"]
    await registry.aclose()
