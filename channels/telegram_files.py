"""Files on Telegram: where to download one (getFile), and uploads by kind."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from telegram import Bot, InputFile

from channels.telegram_errors import translate_errors
from channels.telegram_params import chat_ref, reply_parameters, thread_ref
from picobot.core.channel import Rendered
from picobot.core.errors import BadRequest
from picobot.core.messages import Attachment, AttachmentKind

log = logging.getLogger("picobot.telegram")

PHOTO_LIMIT = 10_000_000
# sendPhoto refuses very long or wide images (width + height over 10 000, ratio over 20):
# they go as a document instead.
PHOTO_REFUSED = ("PHOTO_INVALID_DIMENSIONS", "IMAGE_PROCESS_FAILED")


async def file_path(bot: Bot, attachment: Attachment) -> str:
    """getFile: the path to download (never logged: the URL holds the token)."""
    with translate_errors():
        file = await bot.get_file(attachment.source or "")
    if not file.file_path:
        raise BadRequest("telegram: the file has no download path")
    return file.file_path


async def send_file(
    bot: Bot,
    chat_id: str,
    path: Path,
    attachment: Attachment,
    *,
    caption: Rendered | None,
    reply_to: str | None,
    thread: str | None,
) -> str:
    """sendPhoto (a document if refused), sendVoice, sendAudio or sendDocument; the message id."""
    data = await asyncio.to_thread(path.read_bytes)
    upload = InputFile(data, filename=attachment.name or None)
    common: dict[str, Any] = {
        "chat_id": chat_ref(chat_id),
        "caption": caption.text if caption else None,
        "parse_mode": caption.parse_mode if caption else None,
        "message_thread_id": thread_ref(thread),
        "reply_parameters": reply_parameters(reply_to),
    }
    kind = attachment.kind
    if kind is AttachmentKind.IMAGE and len(data) <= PHOTO_LIMIT:
        try:
            with translate_errors():
                sent = await bot.send_photo(photo=upload, **common)
            return str(sent.message_id)
        except BadRequest as exc:
            if not any(code in str(exc).upper() for code in PHOTO_REFUSED):
                raise
            log.info("telegram: not taken as a photo (%s); sending it as a file", exc)
    with translate_errors():
        if kind is AttachmentKind.VOICE and attachment.mime == "audio/ogg":
            sent = await bot.send_voice(voice=upload, **common)
        elif kind in (AttachmentKind.VOICE, AttachmentKind.AUDIO):
            sent = await bot.send_audio(audio=upload, **common)
        else:
            sent = await bot.send_document(document=upload, **common)
    return str(sent.message_id)
