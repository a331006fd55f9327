"""Live updates while a reply streams: droppable edits and native drafts.

One attempt each, and only if the rate budget allows it now: an edit queued behind a flood wait
is worth nothing, the next streaming tick sends newer text anyway.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from picobot.core import metrics
from picobot.core.channel import Channel
from picobot.core.errors import RateLimited, TransientError
from picobot.core.messages import OutboundMessage
from picobot.text.chunks import render_chunks

if TYPE_CHECKING:
    from picobot.outbound.delivery import Calls

log = logging.getLogger("picobot.dispatch")


class LiveUpdates:
    def __init__(self, calls: Calls) -> None:
        self._calls = calls

    async def update(self, channel: Channel, msg: OutboundMessage) -> list[str]:
        """Send or edit the first chunk of `msg`; [] when skipped (the next tick retries)."""
        chunks = render_chunks(msg.text, channel.capabilities, plain=msg.plain)
        if not chunks:
            return []
        edit = msg.edit_of is not None
        limits = self._calls.limits(channel)
        if not await limits.try_acquire(msg.chat_id, group=msg.is_group, edit=edit):
            return []
        try:
            if msg.edit_of is not None:
                await channel.edit(msg.chat_id, msg.edit_of, chunks[0].rendered)
                metrics.EDITS.labels(msg.channel).inc()
                return [msg.edit_of]
            return [await channel.send(msg.chat_id, chunks[0].rendered, thread=msg.thread)]
        except TransientError as exc:
            if isinstance(exc, RateLimited):
                metrics.RATE_LIMITED.labels(channel.name).inc()
            log.debug("skipped a droppable update in %s:%s: %s", msg.channel, msg.chat_id, exc)
            return []

    async def draft(self, channel: Channel, msg: OutboundMessage) -> list[str]:
        """Show a streaming preview if the budget allows now; skipped otherwise (next tick).

        :raises PermanentError: if the platform refuses drafts here (the streamer then edits).
        """
        chunks = render_chunks(msg.text, channel.capabilities, plain=True)
        if not chunks or msg.draft_id is None:
            return []
        limits = self._calls.limits(channel)
        if not await limits.try_acquire(msg.chat_id, group=msg.is_group, edit=True):
            return []
        try:
            await channel.draft(msg.chat_id, msg.draft_id, chunks[0].rendered, msg.thread)
        except TransientError as exc:
            log.debug("skipped a draft in %s:%s: %s", msg.channel, msg.chat_id, exc)
            return []
        metrics.EDITS.labels(msg.channel).inc()
        return [str(msg.draft_id)]
