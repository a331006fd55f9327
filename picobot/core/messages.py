"""The messages that travel on the bus: inbound from platforms, outbound to them."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from picobot.core.values import value

Message = dict[str, Any]  # an OpenAI-style chat message, as kept in session history


def _empty() -> Mapping[str, object]:
    return MappingProxyType({})


_ID_PREFIX = secrets.token_hex(6)  # random per process: ids of different runs never collide
_ID_COUNTER = itertools.count(1)


def new_id() -> str:
    """A fresh, unique message id (also the outbox key, so it must be stable once made).

    32 hex digits, like a UUID: a random prefix per process and a counter (a `uuid4()` per
    message costs a system call; this is on the path of every message)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):020x}"


@dataclass(frozen=True, slots=True)
class Sender:
    """Who wrote an inbound message. `id` is the platform's user id, as a string."""

    id: str
    username: str | None = None
    display_name: str | None = None


class AttachmentKind(StrEnum):
    IMAGE = "image"
    VOICE = "voice"  # a voice note: transcribed, and answered by voice when asked to
    AUDIO = "audio"
    VIDEO = "video"
    FILE = "file"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file on a message: a reference, never the bytes.

    From a platform it starts with `source` (the platform's handle: a Telegram file_id, a CDN
    URL) and what the platform says about it (`size`, `mime`, both hints); the core fetches it
    into the media store, which sets `id` (the content's SHA-256) and the sniffed `mime`.
    Outbound attachments are always stored; the message's text goes with them as a caption
    where it fits.
    """

    kind: AttachmentKind = AttachmentKind.FILE
    name: str = ""
    mime: str = ""
    size: int | None = None
    id: str | None = None
    source: str | None = None
    width: int | None = None
    height: int | None = None

    @property
    def stored(self) -> bool:
        return self.id is not None

    def to_json(self) -> dict[str, object]:
        return {k: v for k, v in _fields(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Attachment:
        """The inverse of `to_json`; keys it does not know (a newer version's) are ignored."""
        fields = {k: v for k, v in data.items() if k in cls.__slots__}
        fields["kind"] = AttachmentKind(str(fields.get("kind", "file")))
        return cls(**fields)  # type: ignore[arg-type]


def _fields(attachment: Attachment) -> dict[str, object]:
    return {name: getattr(attachment, name) for name in Attachment.__slots__}


@value(frozen=True, slots=True)
class InboundMessage:
    """A user's message, translated from a platform event by a channel.

    `id` is stable for the platform event (the same update redelivered has the same id), so
    replays can be recognised. `message_id` is the platform's own id of the message, used to
    reply to it. `mentioned` is true when the bot was mentioned, replied to or addressed by
    a `/command@bot` — the core answers group messages only then (unless the policy is open).
    """

    channel: str
    chat_id: str
    sender: Sender
    text: str
    id: str = field(default_factory=new_id)
    message_id: str | None = None
    thread: str | None = None
    is_group: bool = False
    mentioned: bool = False
    metadata: Mapping[str, object] = field(default_factory=_empty)
    attachments: tuple[Attachment, ...] = ()

    @property
    def session_key(self) -> str:
        """One conversation: channel + chat, and thread where the platform has threads."""
        key = f"{self.channel}:{self.chat_id}"
        return f"{key}:{self.thread}" if self.thread else key


class Kind(StrEnum):
    """What an outbound message asks the dispatcher to do."""

    ACCEPTED = (
        "accepted"  # an inbound message was accepted: start typing, send `text` as placeholder
    )
    REPLY = "reply"  # text to deliver (split as needed); the first chunk may edit the placeholder
    DRAFT = "draft"  # a native streaming preview (Telegram sendMessageDraft); `draft_id` set
    DONE = "done"  # the turn is over: stop typing, remove an unused placeholder


@value(frozen=True, slots=True)
class OutboundMessage:
    """Text for a chat, in Markdown; the dispatcher renders, splits and delivers it.

    `in_reply_to` is the `InboundMessage.id` this answers: it finds that message's placeholder
    and typing indicator. `reply_to` is the platform message id to quote or thread under.
    `edit_of` replaces an existing message instead of sending (streaming); `plain` skips
    Markdown rendering (half-written text mid-stream); `droppable` lets the dispatcher skip the
    message instead of waiting when the rate budget is spent (an edit the next tick supersedes).
    """

    channel: str
    chat_id: str
    text: str
    id: str = field(default_factory=new_id)
    kind: Kind = Kind.REPLY
    in_reply_to: str | None = None
    reply_to: str | None = None
    thread: str | None = None
    is_group: bool = False
    edit_of: str | None = None
    plain: bool = False
    droppable: bool = False
    draft_id: int | None = None
    metadata: Mapping[str, object] = field(default_factory=_empty)
    attachments: tuple[Attachment, ...] = ()  # stored files, sent with the platform's upload

    @property
    def lane_key(self) -> tuple[str, str]:
        return (self.channel, self.chat_id)

    @property
    def durable(self) -> bool:
        """Kept in the outbox until delivered: replies, not placeholders or streaming partials."""
        return self.kind is Kind.REPLY and not (self.droppable or self.plain)


def reply_to(inbound: InboundMessage, text: str, *, kind: Kind = Kind.REPLY) -> OutboundMessage:
    """An outbound message answering `inbound` in the same chat and thread."""
    return OutboundMessage(
        channel=inbound.channel,
        chat_id=inbound.chat_id,
        text=text,
        kind=kind,
        in_reply_to=inbound.id,
        reply_to=inbound.message_id if inbound.is_group else None,
        thread=inbound.thread,
        is_group=inbound.is_group,
    )


# The outbound door, as the layers above see it: `post` records and queues (the result, the
# platform message ids, arrives later); `deliver` also waits for delivery.
Post = Callable[[OutboundMessage], Awaitable[object]]
Deliver = Callable[[OutboundMessage], Awaitable[list[str]]]
