"""Messages as JSON text: how the SQLite outbox and the Redis backends (outbox, inbound
streams) store them. One shape everywhere, so records move between them unchanged."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from picobot.core.messages import Attachment, InboundMessage, Kind, OutboundMessage, Sender


def dump(msg: InboundMessage | OutboundMessage) -> str:
    # Not dataclasses.asdict: it deep-copies, and the metadata mapping proxy cannot be copied.
    # Field names computed once: this runs twice per message.
    inbound = isinstance(msg, InboundMessage)
    data = {name: getattr(msg, name) for name in (_INBOUND if inbound else _OUTBOUND)}
    data["metadata"] = dict(msg.metadata)
    data["attachments"] = [a.to_json() for a in msg.attachments]
    if isinstance(msg, InboundMessage):
        data["sender"] = {name: getattr(msg.sender, name) for name in _SENDER}
    return encode(data)


_INBOUND = tuple(f.name for f in dataclasses.fields(InboundMessage))
_OUTBOUND = tuple(f.name for f in dataclasses.fields(OutboundMessage))
_SENDER = tuple(f.name for f in dataclasses.fields(Sender))


def encode(value: object) -> str:
    """`value` as JSON text (orjson: several times faster than the json module, and this runs
    for every message and every line of history).

    :raises TypeError: if `value` holds something JSON has no form for, or a lone surrogate.
    """
    return orjson.dumps(value).decode()


def decode(text: str | bytes) -> Any:
    """:raises ValueError: if `text` is not JSON."""
    return orjson.loads(text)


def load_outbound(text: str) -> OutboundMessage:
    """:raises ValueError: (or KeyError/TypeError) if `text` is not a dumped outbound message."""
    data = decode(text)
    data["kind"] = Kind(data["kind"])
    data["attachments"] = _attachments(data)
    return OutboundMessage(**data)


def load_inbound(text: str) -> InboundMessage:
    """:raises ValueError: (or KeyError/TypeError) if `text` is not a dumped inbound message."""
    data = decode(text)
    data["sender"] = Sender(**data["sender"])
    data["attachments"] = _attachments(data)
    return InboundMessage(**data)


def _attachments(data: dict[str, Any]) -> tuple[Attachment, ...]:
    return tuple(Attachment.from_json(a) for a in data.get("attachments", ()))
