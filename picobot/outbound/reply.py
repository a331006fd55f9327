"""Delivering a reply: its chunks in order, the first one editing the "Thinking…" placeholder,
then its files (each upload recorded like a chunk, under the indexes -1, -2, ...).

Durable replies (held by the outbox) record each delivered chunk, so a retry or a restart
resumes at the next one (the last one's record is the reply's `delivered`). While a platform
is down they wait, in order, holding only their own chat; a permanent failure becomes a dead
letter and the placeholder a short note.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from picobot.core import metrics
from picobot.core.channel import Channel, FileTransfer, Rendered
from picobot.core.errors import ChannelError, ChatMigrated, PermanentError, TransientError
from picobot.core.messages import Attachment, OutboundMessage
from picobot.core.retry import RetryPolicy
from picobot.media.store import MediaStore
from picobot.outbound.calls import plain_fallback
from picobot.outbound.files import split_caption, upload_or_note
from picobot.outbound.lanes import Job
from picobot.outbound.placeholders import DELIVERY_FAILED_NOTE, PlaceholderCalls
from picobot.storage.records import OutboxStore
from picobot.text.chunks import Chunk, render_chunks

if TYPE_CHECKING:
    from picobot.outbound.delivery import Calls

log = logging.getLogger("picobot.dispatch")


class Replies:
    def __init__(
        self,
        calls: Calls,
        placeholders: PlaceholderCalls,
        outbox: OutboxStore | None,
        retry: RetryPolicy,
        media: MediaStore | None = None,
    ) -> None:
        self._media = media
        self._calls = calls
        self._placeholders = placeholders
        self._outbox = outbox
        self._retry = retry
        self.migrated: dict[tuple[str, str], str] = {}  # Telegram group -> supergroup ids

    async def deliver(self, channel: Channel, job: Job) -> list[str]:
        msg = job.msg
        while True:
            try:
                ids = await self._migrating(channel, job)
                break
            except TransientError as exc:
                if not job.durable:
                    await self._failed(channel, msg, exc)
                    raise
                # Platform down: the reply stays in the outbox and this chat waits, in order.
                log.warning(
                    "%s:%s unreachable (%s); retrying in %.0f s",
                    msg.channel,
                    msg.chat_id,
                    exc,
                    self._retry.max_backoff,
                )
                await self._retry.sleep(self._retry.max_backoff)
            except ChannelError as exc:
                await self._failed(channel, msg, exc)
                if job.durable and self._outbox is not None:
                    await self._outbox.dead(msg, f"{type(exc).__name__}: {exc}")
                raise
        if job.durable and self._outbox is not None:
            await self._outbox.delivered(msg)
        metrics.child(metrics.OUTBOUND, msg.channel, "sent").inc(len(ids))
        return ids

    async def _migrating(self, channel: Channel, job: Job) -> list[str]:
        try:
            return await self._chunks(channel, job, job.msg)
        except ChatMigrated as exc:
            msg = job.msg
            log.info("%s:%s migrated to %s", msg.channel, msg.chat_id, exc.new_chat_id)
            self.migrated[msg.lane_key] = exc.new_chat_id
            return await self._chunks(channel, job, replace(msg, chat_id=exc.new_chat_id))

    async def _failed(self, channel: Channel, msg: OutboundMessage, exc: ChannelError) -> None:
        log.warning("giving up on a reply to %s:%s: %s", msg.channel, msg.chat_id, exc)
        metrics.OUTBOUND.labels(msg.channel, "failed").inc()
        await self._placeholders.replace_with_note(channel, msg, DELIVERY_FAILED_NOTE)

    async def _chunks(self, channel: Channel, job: Job, msg: OutboundMessage) -> list[str]:
        caps = channel.capabilities
        chunks = render_chunks(msg.text, caps, plain=msg.plain)
        caption, chunks = split_caption(msg, caps, chunks)
        if not chunks and not msg.attachments:
            return []
        progress = job.progress
        placeholder = None
        if msg.edit_of is None and caps.can_edit:
            placeholder = self._placeholders.registry.take(msg.in_reply_to)
        target = msg.edit_of or placeholder
        ids: list[str] = []
        try:
            for index, chunk in enumerate(chunks):
                if index in progress:  # delivered before a restart or a retry
                    ids.append(progress[index])
                    continue
                sent = None
                if index == 0 and target is not None:
                    try:
                        await self._edit(channel, msg, target, chunk)
                        sent = target
                    except PermanentError as exc:
                        if msg.edit_of is not None:
                            raise
                        # The placeholder is not editable (deleted by a user?): send anew.
                        log.info(
                            "placeholder not editable in %s:%s: %s", msg.channel, msg.chat_id, exc
                        )
                if sent is None:
                    sent = await self._send(channel, msg, chunk, first=index == 0)
                ids.append(progress.setdefault(index, sent))
                # The last one's record is the reply's own (`delivered`, next): one write less.
                last = index == len(chunks) - 1 and not msg.attachments
                if last and (placeholder is None or placeholder in ids):
                    continue
                if job.durable and self._outbox is not None:
                    await self._outbox.chunk_sent(job.msg, index, sent)
            for number, attachment in enumerate(msg.attachments):
                key = -(number + 1)
                if key not in progress:
                    first = caption if number == 0 else None
                    progress[key] = await self._send_file(channel, msg, attachment, first)
                    metrics.MEDIA.labels(msg.channel, "out").inc()
                    if job.durable and self._outbox is not None:
                        await self._outbox.chunk_sent(job.msg, key, progress[key])
                ids.append(progress[key])
        except ChannelError as exc:
            if placeholder is not None and placeholder not in ids:
                if job.durable and isinstance(exc, TransientError):
                    self._placeholders.registry.put_back(msg.in_reply_to, placeholder)
                else:
                    await self._placeholders.note_or_remove(
                        channel, msg, placeholder, DELIVERY_FAILED_NOTE
                    )
            raise
        if placeholder is not None and placeholder not in ids:
            await self._placeholders.remove(channel, msg, placeholder)  # no "Thinking…" left
        return ids

    async def _send(self, channel: Channel, msg: OutboundMessage, chunk: Chunk, first: bool) -> str:
        reply_to = msg.reply_to if first else None
        return await plain_fallback(
            chunk,
            lambda r: self._calls(
                channel,
                msg,
                lambda: channel.send(msg.chat_id, r, reply_to=reply_to, thread=msg.thread),
            ),
        )

    async def _edit(
        self, channel: Channel, msg: OutboundMessage, target: str, chunk: Chunk
    ) -> None:
        await plain_fallback(
            chunk,
            lambda r: self._calls(
                channel, msg, lambda: channel.edit(msg.chat_id, target, r), edit=True
            ),
        )
        metrics.EDITS.labels(msg.channel).inc()

    async def _send_file(
        self, channel: Channel, msg: OutboundMessage, attachment: Attachment, caption: Chunk | None
    ) -> str:
        """Upload one file (with the caption), or send the note that takes its place."""
        plan = upload_or_note(channel, self._media, attachment)
        if isinstance(plan, str):
            log.info("%s:%s: a %s was not sent", msg.channel, msg.chat_id, attachment.kind)
            note = f"{plan}\n\n{caption.markdown}" if caption is not None else plan
            # One chunk: a caption fits in any platform's message limit.
            return await self._send(
                channel, msg, render_chunks(note, channel.capabilities)[0], False
            )
        assert isinstance(channel, FileTransfer)  # upload_or_note checked it

        async def upload(rendered: Rendered | None) -> str:
            return await self._calls(
                channel,
                msg,
                lambda: channel.send_file(
                    msg.chat_id,
                    plan,
                    attachment,
                    caption=rendered,
                    reply_to=msg.reply_to,
                    thread=msg.thread,
                ),
            )

        if caption is None:
            return await upload(None)
        return await plain_fallback(caption, upload)
