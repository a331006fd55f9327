"""Lanes hold only their head messages in memory; the rest wait in the outbox, in order."""

import asyncio

from picobot.core.messages import Kind, OutboundMessage
from picobot.outbound.door import DispatchSettings, Outbound
from picobot.outbound.lanes import Job, Lanes
from tests.fakes.memory_channel import MemoryChannel
from tests.outboxes import Outboxes

SPILL = 4


def sent_texts(channel: MemoryChannel, chat: str) -> list[str]:
    return [text for op, c, text in channel.calls if op == "send" and c == chat]


async def test_a_backed_up_lane_keeps_only_its_head_in_memory(outboxes: Outboxes) -> None:
    channel = MemoryChannel()
    channel.hold["c"] = asyncio.Event()  # the platform does not answer this chat yet
    texts = [f"reply {i}" for i in range(50)]
    async with outboxes.open() as box:
        outbound = Outbound({"memory": channel}, DispatchSettings(spill_after=SPILL), outbox=box)
        futures = [await outbound.post(OutboundMessage("memory", "c", t)) for t in texts]
        await outbound.post(OutboundMessage("memory", "other", "not held up"))
        await channel.wait_for(lambda: sent_texts(channel, "other") == ["not held up"])
        stats = outbound.statistics()
        assert stats["queued"] == 49  # and one in flight, waiting for the platform
        assert stats["in_memory"] <= SPILL
        held_up = [p for p in await box.pending() if p.message.chat_id == "c"]
        assert len(held_up) == 50  # all of them on disk
        channel.hold["c"].set()
        await channel.wait_for(lambda: len(sent_texts(channel, "c")) == 50)
        assert sent_texts(channel, "c") == texts  # in order, each once
        assert [len(await f) for f in futures] == [1] * 50  # waiters still hear back
        assert await box.pending() == []
        await outbound.aclose()


async def test_messages_that_are_not_durable_keep_their_place(outboxes: Outboxes) -> None:
    channel = MemoryChannel()
    channel.hold["c"] = asyncio.Event()
    async with outboxes.open() as box:
        outbound = Outbound({"memory": channel}, DispatchSettings(spill_after=2), outbox=box)
        for i in range(6):
            await outbound.post(OutboundMessage("memory", "c", f"a{i}"))
        # A live update (not durable) between two runs of durable replies, then more replies.
        await outbound.post(OutboundMessage("memory", "c", "live", plain=True))
        for i in range(3):
            await outbound.post(OutboundMessage("memory", "c", f"b{i}"))
        await outbound.post(OutboundMessage("memory", "c", "", kind=Kind.DONE))
        channel.hold["c"].set()
        await channel.wait_for(lambda: len(sent_texts(channel, "c")) == 10)
        assert sent_texts(channel, "c") == [*(f"a{i}" for i in range(6)), "live"] + [
            f"b{i}" for i in range(3)
        ]
        await outbound.aclose()


async def test_a_restart_reads_pending_replies_back_as_the_lane_goes(outboxes: Outboxes) -> None:
    async with outboxes.open() as box:
        for i in range(30):
            await box.add(OutboundMessage("memory", f"chat{i % 3}", f"pending {i}"))
    channel = MemoryChannel()
    async with outboxes.open() as box:
        outbound = Outbound({"memory": channel}, DispatchSettings(spill_after=SPILL), outbox=box)
        assert await outbound.resume() == 30
        assert outbound.statistics()["in_memory"] == 0  # nothing loaded up front
        assert await outbound.drain(10)
        for chat in range(3):
            expected = [f"pending {i}" for i in range(30) if i % 3 == chat]
            assert sent_texts(channel, f"chat{chat}") == expected
        await outbound.aclose()


async def test_idle_lanes_end_and_busy_ones_are_kept() -> None:
    delivered: list[str] = []
    hold = asyncio.Event()

    async def deliver(job: Job) -> list[str]:
        if job.msg.text == "held":
            await hold.wait()
        delivered.append(job.msg.text)
        return ["1"]

    lanes = Lanes(deliver)
    lanes.put(Job(OutboundMessage("memory", "quiet", "once")))
    lanes.put(Job(OutboundMessage("memory", "busy", "held")))
    quiet, busy = lanes._lanes[("memory", "quiet")], lanes._lanes[("memory", "busy")]
    async with asyncio.timeout(5):
        await quiet.task  # ends as soon as it has nothing to do
    assert ("memory", "quiet") not in lanes._lanes and ("memory", "busy") in lanes._lanes
    assert not busy.task.done()  # a delivery in progress is never idle
    hold.set()
    async with asyncio.timeout(5):
        await busy.task
    assert len(lanes) == 0 and delivered == ["once", "held"]
    # A chat that writes again gets a new lane.
    assert await lanes.put(Job(OutboundMessage("memory", "quiet", "again"))) == ["1"]
    await lanes.aclose()
