"""A bounded topic with precise close semantics: the inbound path from the intake to the agent.

A full topic makes publishers wait (backpressure). `close()` stops intake at once; readers still
drain what was accepted, then get `EndOfStream`. (Outbound messages have their own door,
`picobot.outbound.door`.)
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Generic, NamedTuple, TypeVar

from picobot.core.errors import BusClosed

T = TypeVar("T")

DEFAULT_MAXSIZE = 1000


class EndOfStream(Exception):
    """The topic was closed and everything it accepted has been read."""


class TopicStatistics(NamedTuple):
    name: str
    size: int
    maxsize: int
    published: int
    delivered: int
    closed: bool


class Topic(Generic[T]):
    """A bounded FIFO with one close: publishers stop, readers drain, then `EndOfStream`."""

    def __init__(self, name: str, maxsize: int = DEFAULT_MAXSIZE) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.name = name
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        # Waiter futures, as asyncio.Queue keeps them: cheaper than a Condition on the hot path.
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self._published = 0
        self._delivered = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def publish_nowait(self, item: T) -> bool:
        """Accept `item` if there is room; return False when full.

        :raises BusClosed: if the topic was closed.
        """
        if self._closed:
            raise BusClosed(f"the {self.name} bus is closed")
        if len(self._items) >= self.maxsize:
            return False
        self._items.append(item)
        self._published += 1
        _wake_one(self._getters)
        return True

    async def publish(self, item: T) -> None:
        """Accept `item`, waiting while the topic is full.

        :raises BusClosed: if the topic is closed, before or while waiting.
        """
        while not self.publish_nowait(item):
            await _wait(self._putters, wake_next_if=lambda: len(self._items) < self.maxsize)

    async def get(self) -> T:
        """The oldest item, waiting for one.

        :raises EndOfStream: once the topic is closed and drained.
        """
        while not self._items:
            if self._closed:
                raise EndOfStream(self.name)
            await _wait(self._getters, wake_next_if=lambda: bool(self._items))
        item = self._items.popleft()
        self._delivered += 1
        _wake_one(self._putters)
        return item

    def close(self) -> None:
        """Stop accepting items; readers drain what is left, then get `EndOfStream`."""
        self._closed = True
        for waiters in (self._getters, self._putters):
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        while True:
            try:
                yield await self.get()
            except EndOfStream:
                return

    def statistics(self) -> TopicStatistics:
        return TopicStatistics(
            self.name,
            len(self._items),
            self.maxsize,
            self._published,
            self._delivered,
            self._closed,
        )


def _wake_one(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return


async def _wait(waiters: deque[asyncio.Future[None]], wake_next_if: Callable[[], bool]) -> None:
    waiter = asyncio.get_running_loop().create_future()
    waiters.append(waiter)
    try:
        await waiter
    except asyncio.CancelledError:
        # A wake-up meant for us must not be lost when we are cancelled right after it.
        if waiter.done() and not waiter.cancelled() and wake_next_if():
            _wake_one(waiters)
        raise
