"""A message's attachments made ready for the model: fetched into the store, then read.

    InboundMessage.attachments ─► fetch (the channel's `download`, size-capped) ─► store
        image ─► kept as a reference: an ``image_url`` part at each model call (vision)
        voice / audio ─► transcribed: the transcript is the user's text
        text, code, PDF ─► their text, inlined up to `max_inline_chars`
        anything else ─► described by name, type and size

A file that cannot be taken is named to the user with its reason (one line) and to the model;
the turn goes on with the rest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from picobot.core import metrics
from picobot.core.channel import Channel, FileTransfer
from picobot.core.errors import ChannelError, Forbidden
from picobot.core.messages import Attachment, AttachmentKind, InboundMessage
from picobot.media.errors import DownloadFailed, MediaError
from picobot.media.store import MediaStore

log = logging.getLogger("picobot.media")

Transcribe = Callable[[Path, Attachment], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Prepared:
    """What the model gets for one message."""

    text: str  # the user's text: caption, transcript, inlined files, descriptions
    images: tuple[Attachment, ...] = ()  # stored images for ``image_url`` parts
    notes: tuple[str, ...] = ()  # one line per refused file, for the user
    voice: bool = False  # it was a voice note (answered by voice when configured)


def human_size(size: int | None) -> str:
    if size is None:
        return "unknown size"
    if size >= 1_000_000:
        return f"{size / 1_000_000:.1f} MB".replace(".0 MB", " MB")
    if size >= 1000:
        return f"{size / 1000:.1f} kB".replace(".0 kB", " kB")
    return f"{size} bytes"


def describe(attachment: Attachment) -> str:
    """``cat.png (image, image/png, 12.3 kB, 800×600 px)``: what the model and demo are told."""
    facts = [str(attachment.kind), attachment.mime or "unknown type", human_size(attachment.size)]
    if attachment.width and attachment.height:
        facts.append(f"{attachment.width}×{attachment.height} px")
    return f"{attachment.name or 'file'} ({', '.join(facts)})"


class MediaIntake:
    """Prepares inbound attachments; `sources` are the running channels, by name."""

    def __init__(
        self,
        store: MediaStore,
        sources: Mapping[str, Channel],
        *,
        vision: bool = True,
        max_inline_chars: int = 20_000,
        transcribe: Transcribe | None = None,
    ) -> None:
        self.store = store
        self.sources = sources
        self.vision = vision
        self.max_inline_chars = max_inline_chars
        self.transcribe = transcribe

    async def prepare(self, msg: InboundMessage) -> Prepared:
        parts: list[str] = []
        images: list[Attachment] = []
        notes: list[str] = []
        voice = False
        for attachment in msg.attachments:
            label = attachment.name or str(attachment.kind)
            try:
                stored = await self.fetch(msg.channel, attachment)
                metrics.MEDIA.labels(msg.channel, "in").inc()
                part, voiced = await self._read(stored)
            except MediaError as exc:
                metrics.MEDIA_REJECTED.labels(type(exc).__name__).inc()
                # The reason may quote the file's name: user content stays out of the log.
                log.info("%s: refused a %s (%s)", msg.channel, attachment.kind, type(exc).__name__)
                notes.append(f"⚠️ {label}: {exc.reason}")
                parts.append(f"[attachment {label} could not be read: {exc.reason}]")
                continue
            voice = voice or voiced
            if stored.kind is AttachmentKind.IMAGE and self.vision:
                images.append(stored)
            parts.append(part)
        if msg.text.strip():
            parts.append(msg.text)
        return Prepared("\n\n".join(parts), tuple(images), tuple(notes), voice)

    async def fetch(self, channel_name: str, attachment: Attachment) -> Attachment:
        """The attachment in the store (downloaded now unless it already is).

        :raises MediaError: too large, empty, unsafe, mismatched, undecodable, or refused.
        """
        if attachment.stored:
            self.store.path(attachment.id or "")  # still there?
            return attachment
        source = self.sources.get(channel_name)
        if not isinstance(source, FileTransfer) or attachment.source is None:
            raise DownloadFailed("this channel cannot download files")
        try:
            return await self.store.put(
                source.download(attachment),
                name=attachment.name or None,
                kind=attachment.kind,
                size=attachment.size,
            )
        except Forbidden as exc:
            raise DownloadFailed("the bot is not allowed to read this file") from exc
        except ChannelError as exc:
            raise DownloadFailed(f"the file could not be downloaded ({exc})") from exc

    async def _read(self, stored: Attachment) -> tuple[str, bool]:
        """The text the model gets for a stored file; True if it was a transcribed voice note."""
        path = self.store.path(stored.id or "")
        what = describe(stored)
        if stored.kind is AttachmentKind.IMAGE:
            return f"[image: {what}]", False
        if stored.kind in (AttachmentKind.VOICE, AttachmentKind.AUDIO) and self.transcribe:
            transcript = (await self.transcribe(path, stored)).strip()
            said = "voice note" if stored.kind is AttachmentKind.VOICE else "audio file"
            voiced = stored.kind is AttachmentKind.VOICE
            return f"[{said}, transcribed: {what}]\n{transcript}", voiced
        from picobot.media.extract import extract_text  # pypdf: loaded when first needed

        text = await asyncio.to_thread(extract_text, path, stored.mime, self.max_inline_chars)
        if text is not None and self.max_inline_chars:
            return f"[file: {what}]\n```\n{text}\n```", False
        return f"[file: {what}]", False
