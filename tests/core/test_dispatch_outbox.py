"""The dispatcher with the durable outbox: resume after a restart, dead letters, a platform
that is down for a while, and placeholders left by a previous run."""

import asyncio
from pathlib import Path

import pytest

from picobot.core import events as ev
from picobot.core.errors import ChannelTimeout, Forbidden, StorageError
from picobot.core.messages import InboundMessage, Kind, OutboundMessage, Sender
from picobot.core.retry import RetryPolicy
from picobot.outbound.door import DispatchSettings, Outbound
from picobot.storage.outbox import Outbox
from picobot.storage.records import OutboxStore
from tests.fakes.memory_channel import MemoryChannel
from tests.outboxes import Outboxes


async def no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


def dispatcher(channel: MemoryChannel, outbox: OutboxStore) -> Outbound:
    settings = DispatchSettings(retry=RetryPolicy(sleep=no_sleep, max_attempts=2))
    return Outbound({"memory": channel}, settings, outbox=outbox)


async def test_a_restart_resumes_a_reply_at_its_next_chunk(outboxes: Outboxes) -> None:
    text = "\n\n".join(f"Paragraph {i} " + "x" * 60 for i in range(4))  # 4 chunks of <=100
    msg = OutboundMessage("memory", "c", text)
    async with outboxes.open() as box:
        await box.add(msg)
        await box.chunk_sent(msg, 0, "earlier")  # the previous run got this far
    channel = MemoryChannel()
    async with outboxes.open() as box:
        d = dispatcher(channel, box)
        assert await d.resume() == 1
        await channel.wait_for(lambda: len(channel.visible("c")) == 3)
        await d.drain(5)
        assert [t.split()[1] for t in channel.visible("c")] == ["1", "2", "3"]
        assert await box.pending() == []
        await d.aclose()


async def test_permanent_failure_becomes_a_dead_letter(outboxes: Outboxes) -> None:
    channel = MemoryChannel()
    channel.fail("send", Forbidden("bot was blocked"))
    async with outboxes.open() as box:
        d = dispatcher(channel, box)
        with pytest.raises(Forbidden):
            await d.deliver(OutboundMessage("memory", "c", "hello"))
        [letter] = await box.dead_letters()
        assert "bot was blocked" in letter.error and letter.text == "hello"
        assert await box.pending() == []
        await d.aclose()


async def test_a_platform_down_for_a_while_gets_everything_in_order(outboxes: Outboxes) -> None:
    channel = MemoryChannel()
    channel.fail("send", ChannelTimeout("down"), times=7)  # more than max_attempts, twice over
    async with outboxes.open() as box:
        d = dispatcher(channel, box)
        futures = [await d.post(OutboundMessage("memory", "c", f"m{i}")) for i in range(3)]
        await asyncio.wait_for(asyncio.gather(*futures), 10)
        assert channel.visible("c") == ["m0", "m1", "m2"]
        assert await box.counts() == {"pending": 0, "dead": 0}
        await d.aclose()


async def test_only_durable_messages_are_recorded(outboxes: Outboxes) -> None:
    channel = MemoryChannel()
    async with outboxes.open() as box:
        d = dispatcher(channel, box)
        [mid] = await d.deliver(OutboundMessage("memory", "c", "partial", plain=True))
        for msg, recorded in (
            (OutboundMessage("memory", "c", "more", edit_of=mid, droppable=True), 0),
            (OutboundMessage("memory", "c", "final", edit_of=mid), 1),
        ):
            channel.hold["c"], channel.gated = asyncio.Event(), asyncio.Event()
            future = await d.post(msg)
            await asyncio.wait_for(channel.gated.wait(), 5)  # the call is in flight
            assert len(await box.pending()) == recorded
            channel.hold["c"].set()
            await future
        assert await box.pending() == []
        await d.aclose()


async def test_a_placeholder_left_by_a_crash_is_edited_by_the_resumed_reply(
    outboxes: Outboxes,
) -> None:
    inbound = InboundMessage("memory", "c", Sender("u"), "hi", id="in1")
    channel = MemoryChannel()
    async with outboxes.open() as box:  # the run that crashed
        d = dispatcher(channel, box)
        if isinstance(box, Outbox):  # SQLite keeps the placeholder on the inbound record
            await box.seen(inbound)
        accepted = OutboundMessage(
            "memory", "c", "Thinking…", kind=Kind.ACCEPTED, in_reply_to="in1"
        )
        await d.deliver(accepted)
        await box.add(OutboundMessage("memory", "c", "the answer", in_reply_to="in1"))
        await d.aclose()
    async with outboxes.open() as box:  # the restart
        d = dispatcher(channel, box)
        await d.resume()
        await channel.wait_for(lambda: channel.visible("c") == ["the answer"])
        [message] = channel.messages.values()
        assert message.history == ["Thinking…"]  # edited in place, nothing left behind
        if isinstance(box, Outbox):
            assert await box.unfinished() == []  # answered: the turn is not run again
        else:
            assert await box.answered("in1")  # type: ignore[attr-defined]
        assert await box.placeholders() == []  # the reply took it
        await d.aclose()


async def test_a_turn_whose_finish_was_cut_is_run_again(tmp_path: Path) -> None:
    from picobot.storage.outbox import FinishedInOutbox

    class CutWriter:
        async def feed(self, event: object) -> None: ...

        async def finish(self) -> None:
            raise asyncio.CancelledError  # shutdown cancelled the delivery of the reply

    inbound = InboundMessage("memory", "c", Sender("u"), "hi", id="in1")
    async with Outbox.in_dir(tmp_path) as box:
        await box.seen(inbound)
        with pytest.raises(asyncio.CancelledError):
            await FinishedInOutbox(CutWriter(), inbound.id, box).finish()  # type: ignore[arg-type]
        assert await box.unfinished() == [inbound]


async def test_a_turn_whose_reply_could_not_be_recorded_is_not_finished(tmp_path: Path) -> None:
    from picobot.outbound.streaming import PieceReply
    from picobot.storage.outbox import FinishedInOutbox

    class FullDisk(Outbox):
        fail = 1  # the next records that fail

        async def add(self, msg: OutboundMessage) -> None:
            if self.fail:
                self.fail -= 1
                raise StorageError("disk full (test)")
            await super().add(msg)

    inbound = InboundMessage("memory", "c", Sender("u"), "hi", id="in1")
    channel = MemoryChannel()
    async with FullDisk(tmp_path / "outbox.db") as box:
        await box.seen(inbound)
        d = dispatcher(channel, box)
        writer = FinishedInOutbox(PieceReply(inbound, d.deliver), inbound.id, box)
        await writer.feed(ev.TurnStarted("t", inbound.session_key))
        await writer.feed(ev.TextDelta("lost"))
        with pytest.raises(StorageError):
            await writer.feed(ev.TurnFinished("lost"))
        await writer.feed(ev.TurnFailed("not shown"))  # the rest of this run is dropped
        await writer.finish()
        assert await box.unfinished() == [inbound]  # a restart runs it again
        assert channel.visible("c") == []
        await d.aclose()


async def test_a_cancelled_submitter_does_not_crash_the_lane(
    caplog: pytest.LogCaptureFixture,
) -> None:
    channel = MemoryChannel()
    d = Outbound({"memory": channel})
    channel.hold["c"] = asyncio.Event()
    future = await d.post(OutboundMessage("memory", "c", "late"))
    await asyncio.wait_for(channel.gated.wait(), 5)
    future.cancel()  # e.g. a turn cancelled at shutdown while its reply was in flight
    channel.hold["c"].set()
    await d.deliver(OutboundMessage("memory", "c", "next"))
    assert channel.visible("c") == ["late", "next"]
    assert "crashed" not in caplog.text
    await d.aclose()


async def test_a_reply_is_in_the_outbox_before_its_lane_takes_it(outboxes: Outboxes) -> None:
    channel = MemoryChannel()
    async with outboxes.open() as box:
        d = dispatcher(channel, box)
        channel.hold["c"] = asyncio.Event()
        first = await d.post(OutboundMessage("memory", "c", "first"))
        await asyncio.wait_for(channel.gated.wait(), 5)  # the lane is busy with "first"
        second = await d.post(OutboundMessage("memory", "c", "second"))
        assert [p.message.text for p in await box.pending()] == ["first", "second"]
        channel.hold["c"].set()
        await asyncio.gather(first, second)
        assert await box.pending() == []
        await d.aclose()
