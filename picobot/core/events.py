"""Typed run events: what a turn emits, for streaming, the web chat and `picobot chat`."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from picobot.core.values import value


@value(frozen=True, slots=True)
class TurnStarted:
    run_id: str
    session: str


@value(frozen=True, slots=True)
class TextDelta:
    text: str


@value(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@value(frozen=True, slots=True)
class ToolStarted:
    call_id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@value(frozen=True, slots=True)
class ToolFinished:
    call_id: str
    name: str
    result: str
    error: bool = False


@value(frozen=True, slots=True)
class SteeringInjected:
    text: str
    message_id: str | None = None  # the InboundMessage.id it came from, when known


@value(frozen=True, slots=True)
class TurnFinished:
    text: str  # the full reply


SHUTDOWN = "shutdown"  # TurnAborted reason when the daemon stops mid-turn: it runs again later


@value(frozen=True, slots=True)
class TurnAborted:
    reason: str  # e.g. "stopped", "new session", "shutdown"


@value(frozen=True, slots=True)
class TurnFailed:
    message: str  # safe to show to the user
    # What went wrong, for the owner (`picobot chat`), never shown to chat users.
    detail: str = field(default="", compare=False)


RunEvent = (
    TurnStarted
    | TextDelta
    | ReasoningDelta
    | ToolStarted
    | ToolFinished
    | SteeringInjected
    | TurnFinished
    | TurnAborted
    | TurnFailed
)
