"""Steering (picoclaw's `agent/steering.go`): messages that arrive while a session's turn runs.

They wait in the session's queue (bounded: a flood cannot grow it without limit). The running
turn polls it after each tool call and before each LLM call; waiting messages make the turn
skip its remaining tool calls and show the model the new message(s) at once. Whatever is still
queued when the turn ends runs as a follow-up turn.

Modes: ``one-at-a-time`` hands out one message per poll (the model answers each in turn);
``all`` hands out everything waiting (the model sees them together).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from picobot.core.messages import InboundMessage

DEFAULT_MAXSIZE = 10
SteeringMode = Literal["one-at-a-time", "all"]


@dataclass(frozen=True, slots=True)
class Queued:
    text: str
    message_id: str | None = None  # the InboundMessage.id, so its placeholder can be cleaned up
    inbound: InboundMessage | None = None  # the message itself, when it has files to read


class SteeringQueue:
    """A bounded FIFO of `Queued` messages for one session."""

    def __init__(self, mode: SteeringMode = "one-at-a-time", maxsize: int = DEFAULT_MAXSIZE):
        self.mode = mode
        self.maxsize = maxsize
        self._items: deque[Queued] = deque()

    def push(self, item: Queued) -> bool:
        """Queue `item`; False (and nothing queued) when the queue is full."""
        if len(self._items) >= self.maxsize:
            return False
        self._items.append(item)
        return True

    def take(self) -> list[Queued]:
        """What one poll hands to the turn: one message, or all of them in mode ``all``."""
        if self.mode == "all":
            items = list(self._items)
            self._items.clear()
            return items
        return [self._items.popleft()] if self._items else []

    def clear(self) -> list[Queued]:
        """Drop everything (``/stop``); returns what was dropped."""
        items = list(self._items)
        self._items.clear()
        return items

    def __len__(self) -> int:
        return len(self._items)
