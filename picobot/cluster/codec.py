"""Messages as JSON for Redis (the same shape the SQLite outbox stores)."""

from __future__ import annotations

import dataclasses
import json

from picobot.core.messages import InboundMessage, Kind, OutboundMessage, Sender


def dump(msg: InboundMessage | OutboundMessage) -> str:
    # Not dataclasses.asdict: it deep-copies, and the metadata mapping proxy cannot be copied.
    data = {f.name: getattr(msg, f.name) for f in dataclasses.fields(msg)}
    data["metadata"] = dict(msg.metadata)
    if isinstance(msg, InboundMessage):
        data["sender"] = dataclasses.asdict(msg.sender)
    return json.dumps(data, ensure_ascii=False)


def load_inbound(text: str) -> InboundMessage:
    """:raises ValueError: (or KeyError/TypeError) if `text` is not a dumped inbound message."""
    data = json.loads(text)
    data["sender"] = Sender(**data["sender"])
    return InboundMessage(**data)


def load_outbound(text: str) -> OutboundMessage:
    data = json.loads(text)
    data["kind"] = Kind(data["kind"])
    return OutboundMessage(**data)
