"""The turn journal: a turn's start and end recorded, so a restart runs again only the turns
that never finished (SQLite: `Outbox`; cluster mode also clears the shared placeholder)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Protocol

from picobot.core.errors import StorageError
from picobot.core.events import SHUTDOWN, RunEvent, TurnAborted, TurnStarted

if TYPE_CHECKING:
    from picobot.core.channel import ReplyWriter


class TurnJournal(Protocol):
    async def started(self, inbound_id: str) -> None:
        """A turn for `inbound_id` starts: one more attempt, should it never finish."""

    async def finished(self, inbound_id: str) -> None:
        """The turn for `inbound_id` ended; it will not be run again."""

    async def interrupted(self, inbound_id: str) -> None:
        """A graceful shutdown cut the turn: not the turn's fault, so not an attempt."""


class FinishedInOutbox:
    """Wraps a reply writer: when the turn is over, its inbound message is marked finished
    (after the writer delivered what it had), so a restart does not run it again."""

    def __init__(self, writer: ReplyWriter, inbound_id: str, outbox: TurnJournal) -> None:
        self.writer = writer
        self.inbound_id = inbound_id
        self.outbox = outbox
        self._interrupted = False

    async def feed(self, event: RunEvent) -> None:
        if isinstance(event, TurnStarted):
            with contextlib.suppress(StorageError):  # reported by the outbox's watcher
                await self.outbox.started(self.inbound_id)
        # A turn cut by shutdown is not finished: the next start runs it again.
        if isinstance(event, TurnAborted) and event.reason == SHUTDOWN:
            self._interrupted = True
        await self.writer.feed(event)

    async def finish(self) -> None:
        await self.writer.finish()  # if this is cut short, the turn is not finished either
        with contextlib.suppress(StorageError):  # not recorded: a restart runs it again
            if self._interrupted:
                await self.outbox.interrupted(self.inbound_id)
            else:
                await self.outbox.finished(self.inbound_id)
