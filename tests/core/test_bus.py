import asyncio

import pytest

from picobot.core.bus import EndOfStream, Topic
from picobot.core.errors import BusClosed


async def test_fifo_and_statistics() -> None:
    topic: Topic[int] = Topic("t", maxsize=10)
    for i in range(3):
        await topic.publish(i)
    assert [await topic.get() for _ in range(3)] == [0, 1, 2]
    stats = topic.statistics()
    assert (stats.published, stats.delivered, stats.size) == (3, 3, 0)


async def test_full_topic_makes_publishers_wait() -> None:
    topic: Topic[int] = Topic("t", maxsize=1)
    await topic.publish(1)
    blocked = asyncio.create_task(topic.publish(2))
    await asyncio.sleep(0)  # let it run up to its wait
    assert not blocked.done()
    assert await topic.get() == 1
    await asyncio.wait_for(blocked, 1)
    assert await topic.get() == 2


async def test_close_refuses_new_items_and_drains_old_ones() -> None:
    topic: Topic[int] = Topic("t")
    await topic.publish(1)
    await topic.publish(2)
    topic.close()
    with pytest.raises(BusClosed):
        await topic.publish(3)
    assert [item async for item in topic] == [1, 2]
    with pytest.raises(EndOfStream):
        await topic.get()


async def test_close_wakes_waiting_readers_and_publishers() -> None:
    topic: Topic[int] = Topic("t", maxsize=1)
    reader = asyncio.create_task(topic.get())
    await asyncio.sleep(0)
    topic.close()
    with pytest.raises(EndOfStream):
        await asyncio.wait_for(reader, 1)

    full: Topic[int] = Topic("f", maxsize=1)
    await full.publish(1)
    writer = asyncio.create_task(full.publish(2))
    await asyncio.sleep(0)
    full.close()
    with pytest.raises(BusClosed):
        await asyncio.wait_for(writer, 1)


async def test_cancelled_reader_does_not_swallow_an_item() -> None:
    topic: Topic[int] = Topic("t")
    first = asyncio.create_task(topic.get())
    second = asyncio.create_task(topic.get())
    await asyncio.sleep(0)
    topic.publish_nowait(7)  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs: the wake-up passes to `second`
    assert await asyncio.wait_for(second, 1) == 7
