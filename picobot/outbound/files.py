"""Outbound attachments: which text rides as a caption, and whether a file may be uploaded.

OutboundMessage(text, attachments) ─► caption? (one chunk within `max_caption`)
    each attachment ─► in the store, within the channel's upload limit ─► send_file
                    ─► otherwise a one-line note in its place (never a crash)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from picobot.core.channel import Capabilities, Channel, FileTransfer
from picobot.core.messages import Attachment, OutboundMessage
from picobot.media.errors import FileTooLarge, MediaError
from picobot.media.store import MediaStore
from picobot.text.chunks import MIN_LIMIT, Chunk, render_chunks

NO_FILES = "this chat cannot receive files"


def split_caption(
    msg: OutboundMessage, caps: Capabilities, chunks: list[Chunk]
) -> tuple[Chunk | None, list[Chunk]]:
    """(caption, text chunks still to send): a short text goes with the first file."""
    if not msg.attachments or not chunks or caps.max_caption < MIN_LIMIT:
        return None, chunks
    fitted = render_chunks(msg.text, replace(caps, max_length=caps.max_caption), plain=msg.plain)
    if len(fitted) == 1:
        return fitted[0], []
    return None, chunks


def upload_or_note(
    channel: Channel, store: MediaStore | None, attachment: Attachment
) -> Path | str:
    """The stored file to upload, or the note to send instead (Markdown, one line)."""
    label = attachment.name or str(attachment.kind)
    if not isinstance(channel, FileTransfer) or store is None:
        return f"📎 {label}: {NO_FILES}"
    try:
        path = store.path(attachment.id or "")
        size = path.stat().st_size
        limit = channel.capabilities.upload_limit(attachment)
        if size > limit:
            raise FileTooLarge(size, limit)
    except MediaError as exc:
        return f"⚠️ {label}: {exc.reason}"
    return path
