"""Telegram update → `InboundMessage`: which updates picobot answers, and how they are addressed.

New messages from people are translated: text, and files — `photo` (the largest size within the
core's limit), `document`, `voice`, `audio`, `video`, `video_note` — with their caption as the
text. Everything else — edited messages, stickers, service messages (members joining, pinned
messages, topic events), channel posts, messages from bots, update kinds newer than this code —
gives ``None`` and is ignored.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from telegram import Message, MessageEntity, Update
from telegram.constants import ChatType

from picobot.core.messages import Attachment, AttachmentKind, InboundMessage, Sender

CHANNEL = "telegram"
GROUP_TYPES = frozenset({ChatType.GROUP, ChatType.SUPERGROUP})


@dataclass(frozen=True, slots=True)
class BotIdentity:
    """Who the bot is, from getMe; `commands` are answered in groups even without ``@bot``."""

    id: int
    username: str
    commands: Collection[str] = ()


def to_inbound(
    update: Update, bot: BotIdentity, max_file_bytes: int | None = None
) -> InboundMessage | None:
    """The message picobot should consider, or None when the update is not one.

    `id` is ``telegram:<update_id>``, the same when Telegram redelivers the update.
    """
    message = update.message  # None for edited_message, channel_post and every other kind
    if message is None:
        return None
    files = attachments(message, max_file_bytes)
    if message.text is None and not files:
        return None
    user = message.from_user
    if user is None or user.is_bot or message.chat.type == ChatType.CHANNEL:
        return None
    is_group = message.chat.type in GROUP_TYPES
    mentioned = is_group and addressed(message, bot)
    return InboundMessage(
        channel=CHANNEL,
        chat_id=str(message.chat.id),
        sender=Sender(str(user.id), user.username, user.full_name),
        text=_without_leading_mention(message, bot) if mentioned else _text(message),
        id=f"{CHANNEL}:{update.update_id}",
        message_id=str(message.message_id),
        # Forum topics are separate conversations. Outside forums, message_thread_id marks
        # reply chains, which are not topics and cannot be posted to with message_thread_id.
        thread=str(message.message_thread_id)
        if message.is_topic_message and message.message_thread_id
        else None,
        is_group=is_group,
        mentioned=mentioned,
        attachments=files,
    )


def attachments(message: Message, max_file_bytes: int | None) -> tuple[Attachment, ...]:
    """The message's files as references (file_id and what Telegram says of them)."""
    found: list[Attachment] = []
    if message.photo:
        fits = [
            p for p in message.photo if not max_file_bytes or (p.file_size or 0) <= max_file_bytes
        ]
        photo = max(fits or message.photo[:1], key=lambda p: p.width * p.height)
        found.append(
            Attachment(
                AttachmentKind.IMAGE,
                name="",
                size=photo.file_size,
                source=photo.file_id,
                width=photo.width,
                height=photo.height,
            )
        )
    if (doc := message.document) is not None:
        found.append(
            _file(AttachmentKind.FILE, doc.file_id, doc.file_size, doc.file_name, doc.mime_type)
        )
    if (voice := message.voice) is not None:
        found.append(
            _file(AttachmentKind.VOICE, voice.file_id, voice.file_size, None, voice.mime_type)
        )
    if (audio := message.audio) is not None:
        found.append(
            _file(
                AttachmentKind.AUDIO,
                audio.file_id,
                audio.file_size,
                audio.file_name,
                audio.mime_type,
            )
        )
    if (video := message.video) is not None:
        found.append(
            _file(
                AttachmentKind.VIDEO,
                video.file_id,
                video.file_size,
                video.file_name,
                video.mime_type,
            )
        )
    if (note := message.video_note) is not None:
        found.append(_file(AttachmentKind.VIDEO, note.file_id, note.file_size, None, None))
    return tuple(found)


def _file(
    kind: AttachmentKind, file_id: str, size: int | None, name: str | None, mime: str | None
) -> Attachment:
    return Attachment(kind, name=name or "", mime=mime or "", size=size, source=file_id)


def _text(message: Message) -> str:
    return message.text or message.caption or ""


def addressed(message: Message, bot: BotIdentity) -> bool:
    """An ``@bot`` mention, a ``/command@bot`` (or one of our commands bare), or a reply to us."""
    name = bot.username.lower()
    entities = message.parse_entities() | message.parse_caption_entities()
    for entity, text in entities.items():
        if entity.type == MessageEntity.MENTION and text[1:].lower() == name:
            return True
        if entity.type == MessageEntity.TEXT_MENTION and entity.user and entity.user.id == bot.id:
            return True
        if entity.type == MessageEntity.BOT_COMMAND:
            command, _, target = text[1:].lower().partition("@")
            if target == name or (not target and entity.offset == 0 and command in bot.commands):
                return True
    reply = message.reply_to_message
    # In forums every message "replies" to its topic's creation message: not a reply to us.
    return (
        reply is not None
        and reply.forum_topic_created is None
        and reply.from_user is not None
        and reply.from_user.id == bot.id
    )


def _without_leading_mention(message: Message, bot: BotIdentity) -> str:
    text = _text(message)
    mention = f"@{bot.username}"
    if text[: len(mention)].lower() == mention.lower():
        return text[len(mention) :].lstrip(" ,:\n") or text
    return text
