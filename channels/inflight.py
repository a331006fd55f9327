"""Platform events being handed to the core, counted so that a hand-over can let them finish.

In cluster mode a node that gives its connection's lease up (SIGTERM, reload) closes the
connection first, then waits for the events it already received to reach the sink, and only
then releases the lease: an event the sink takes after the release would be refused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


class InFlight:
    """How many events are being handed over now; `finished()` waits for none."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        """Around one event's hand-over to the sink."""
        self._count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._count -= 1
            if self._count == 0:
                self._idle.set()

    async def finished(self, timeout: float) -> bool:
        """Wait at most `timeout` s until no event is in flight; False if some still are."""
        # discord.py and slack_sdk run each event in a task of its own: let those already
        # scheduled begin (and be counted) before looking.
        await asyncio.sleep(0)
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True
