"""`cancel_and_wait` ends tasks but never swallows the caller's own cancellation."""

import asyncio

import pytest

from picobot.core.tasks import cancel_and_wait


async def test_it_cancels_and_waits_for_every_task() -> None:
    ended: list[str] = []

    async def worker(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            ended.append(name)

    tasks = [asyncio.create_task(worker(n)) for n in "ab"]
    await asyncio.sleep(0)  # let them start
    await cancel_and_wait(*tasks)
    assert sorted(ended) == ["a", "b"] and all(t.cancelled() for t in tasks)


async def test_a_cancelled_caller_is_not_swallowed() -> None:
    release = asyncio.Event()
    waiting = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            waiting.set()
            await release.wait()  # takes its time to unwind
            raise

    async def caller(task: asyncio.Task[None]) -> str:
        await cancel_and_wait(task)
        return "went on"  # what a swallowed cancellation would do

    inner = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    outer = asyncio.create_task(caller(inner))
    await waiting.wait()
    outer.cancel()  # e.g. a forced exit during shutdown
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await outer
