"""Slack events → `InboundMessage`, and the bounded memory used to drop redeliveries."""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from typing import Any

from channels.downloads import kind_of
from picobot.core.messages import Attachment, InboundMessage, Sender

log = logging.getLogger("picobot.slack")

LRU_SIZE = 2048  # event keys remembered to drop redeliveries; our ts -> thread_ts
USER_SUBTYPES = frozenset({"file_share", "thread_broadcast", "me_message"})  # written by people


def remember(lru: OrderedDict[str, str], key: str, value: str = "") -> None:
    """Add `key` to a bounded LRU mapping, forgetting the oldest key past `LRU_SIZE`."""
    lru[key] = value
    lru.move_to_end(key)
    if len(lru) > LRU_SIZE:
        lru.popitem(last=False)


def to_inbound(
    body: dict[str, Any], *, channel_name: str, bot_user_id: str, mention: re.Pattern[str]
) -> InboundMessage | None:
    """The message in `body`, or None for events that are not for the agent."""
    event = body.get("event")
    kind = event_type(body)
    if not isinstance(event, dict):
        log.warning("slack: ignored a malformed %s event (no event object)", kind)
        return None
    subtype = event.get("subtype")
    if subtype is not None and subtype not in USER_SUBTYPES:
        return None  # edits, deletions, joins, topic changes, bot_message, ...
    if event.get("bot_id") or event.get("user") == bot_user_id:
        return None  # other bots (no loops) and ourselves
    channel, user, ts = event.get("channel"), event.get("user"), event.get("ts")
    text, thread_ts = event.get("text", ""), event.get("thread_ts")
    if not (_nonempty(channel, user, ts) and isinstance(text, str)) or not (
        thread_ts is None or _nonempty(thread_ts)
    ):
        log.warning("slack: ignored a malformed %s event %s", kind, body.get("event_id"))
        return None
    mentioned = kind == "app_mention" or bool(mention.search(text))
    text = re.sub(r"[ \t]{2,}", " ", mention.sub("", text)).strip()
    files = event.get("files")
    attachments = tuple(
        _attachment(f) for f in (files if isinstance(files, list) else []) if _is_file(f)
    )
    if not text and not attachments:
        return None  # a bare mention
    is_dm = event.get("channel_type") == "im"
    return InboundMessage(
        channel=channel_name,
        chat_id=str(channel),
        sender=Sender(str(user)),
        text=text,
        id=f"{channel}:{ts}",  # the same for redeliveries and for message + app_mention
        message_id=ts,
        # Channels: answer in the message's thread (each thread is a session). DMs stay
        # one conversation unless the user opened a thread.
        thread=thread_ts if is_dm else (thread_ts or ts),
        is_group=not is_dm,
        mentioned=mentioned,
        metadata={"event_id": body.get("event_id"), "team": body.get("team_id")},
        attachments=attachments,
    )


def event_type(body: dict[str, Any]) -> str:
    event = body.get("event")
    kind = event.get("type") if isinstance(event, dict) else None
    return kind if isinstance(kind, str) else "unknown"


def _is_file(item: Any) -> bool:
    return isinstance(item, dict) and isinstance(item.get("id"), str)


def _attachment(file: dict[str, Any]) -> Attachment:
    """A Slack file object as a reference (its id: files.info gives a current URL)."""
    mime = str(file.get("mimetype") or "")
    size = file.get("size")
    return Attachment(
        kind_of(mime, voice=file.get("subtype") == "slack_audio"),  # a clip recorded in Slack
        name=str(file.get("name") or ""),
        mime=mime,
        size=size if isinstance(size, int) else None,
        source=file["id"],
    )


def _nonempty(*values: object) -> bool:
    return all(isinstance(v, str) and v for v in values)
