"""The session registry: per conversation, its lock, steering queue and running turns.

A session exists while something runs or waits in it; its history lives in the store.
`stop()` cancels a session's turns (their history is rolled back by the turn itself).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from picobot.agent.steering import Queued, SteeringMode, SteeringQueue

STOP_WAIT = 5.0  # seconds `stop()` waits for an aborted turn to unwind


@dataclass(eq=False)
class Turn:
    task: asyncio.Task[None] | None = None
    reason: str = "cancelled"  # what TurnAborted says if the task is cancelled
    over: bool = False  # its last event (finished, aborted, failed) was emitted


@dataclass(eq=False)
class Session:
    key: str
    steering: SteeringQueue
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    turns: set[Turn] = field(default_factory=set)


class SessionRegistry:
    def __init__(self, steering_mode: SteeringMode) -> None:
        self._mode = steering_mode
        self._sessions: dict[str, Session] = {}

    def __iter__(self) -> object:
        return iter(list(self._sessions))

    def keys(self) -> list[str]:
        return list(self._sessions)

    def session(self, key: str) -> Session:
        """The session `key`, made on first use."""
        state = self._sessions.get(key)
        if state is None:
            state = self._sessions[key] = Session(key, SteeringQueue(self._mode))
        return state

    def turn_done(self, state: Session, turn: Turn) -> None:
        state.turns.discard(turn)
        # Forget idle sessions (their history is in the store), unless something is waiting.
        idle = not state.turns and not state.steering and not state.lock.locked()
        if idle and self._sessions.get(state.key) is state:
            del self._sessions[state.key]

    def is_running(self, key: str) -> bool:
        state = self._sessions.get(key)
        return bool(state and state.turns)

    def steer(self, key: str, item: Queued) -> bool:
        """Queue `item` for the session's running turn; False when the queue is full."""
        return self.session(key).steering.push(item)

    def queued(self, key: str) -> int:
        state = self._sessions.get(key)
        return len(state.steering) if state else 0

    def take_followup(self, key: str) -> list[Queued]:
        """What a follow-up turn should answer: one queued message, or all in mode ``all``."""
        state = self._sessions.get(key)
        return state.steering.take() if state else []

    async def stop(self, key: str, *, reason: str) -> bool:
        """Hard abort: clear the steering queue and cancel the session's turns. Waits briefly
        for them to unwind. True if there was anything to stop."""
        state = self._sessions.get(key)
        if state is None:
            return False
        dropped = state.steering.clear()
        tasks = []
        for turn in state.turns:
            if turn.task is not None and not turn.task.done():
                turn.reason = reason
                turn.task.cancel()
                tasks.append(turn.task)
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_WAIT)
        return bool(tasks or dropped)
