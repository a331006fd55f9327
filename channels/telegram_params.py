"""The Bot API's ids and reply parameters, from the core's strings."""

from __future__ import annotations

from telegram import ReplyParameters


def chat_ref(chat_id: str) -> int | str:
    return int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id  # "@channel" stays


def thread_ref(thread: str | None) -> int | None:
    return int(thread) if thread else None


def reply_parameters(reply_to: str | None) -> ReplyParameters | None:
    """A reply that is still sent when the message replied to is gone."""
    return ReplyParameters(int(reply_to), allow_sending_without_reply=True) if reply_to else None
