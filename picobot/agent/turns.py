"""The agent: runs turns — model calls, tool calls, steering — one at a time per session.

A turn runs in its own task, so `/stop` can abort it wherever it is (an LLM stream is closed, a
tool is cancelled). Its messages reach the session store only when it ends normally: an
aborted or failed turn leaves the history exactly as it was when the turn began.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from picobot.agent.commands import Command, parse_command, run_command
from picobot.agent.llm import LLM, LLMError, Message, ToolCall
from picobot.agent.llm import ReasoningDelta as LLMReasoning
from picobot.agent.llm import TextDelta as LLMText
from picobot.agent.steering import Queued, SteeringQueue
from picobot.agent.tools import (
    Publish,
    ToolContext,
    ToolError,
    ToolRegistry,
    default_tools,
    parse_arguments,
)
from picobot.config import AgentConfig
from picobot.core import events as ev
from picobot.core.errors import StorageError
from picobot.core.messages import InboundMessage, new_id
from picobot.storage.sessions import SessionStore, trim_history

log = logging.getLogger("picobot.agent")

GENERIC_FAILURE = "⚠️ Something went wrong. Please try again."
STORAGE_FAILURE = "⚠️ I could not save this conversation (storage problem). Please try later."
SKIPPED = "Skipped due to queued user message."
INTERRUPTED = "Skipped: the user interrupted the turn."
LIMIT_NOTICE = "⚠️ I stopped after too many tool steps without reaching an answer."
SEPARATOR = "\n\n"  # between the texts of successive model calls in one reply
STOP_WAIT = 5.0  # seconds `stop()` waits for an aborted turn to unwind

Emit = Callable[[ev.RunEvent], None]
_TERMINAL = (ev.TurnFinished, ev.TurnAborted, ev.TurnFailed)


@dataclass(eq=False)
class _Turn:
    task: asyncio.Task[None] | None = None
    reason: str = "cancelled"  # what TurnAborted says if the task is cancelled


@dataclass(eq=False)
class _Session:
    key: str
    steering: SteeringQueue
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    turns: set[_Turn] = field(default_factory=set)
    interrupted: bool = False


class Agent:
    """One assistant: a system prompt, an LLM, tools and per-session history.

    Resource handling: the session store is opened lazily (or by `open()`) and closed by
    `aclose()`; the LLM belongs to the caller, who closes it.
    """

    def __init__(
        self,
        llm: LLM,
        config: AgentConfig | None = None,
        *,
        data_dir: str | Path | None = None,
        store: SessionStore | None = None,
        tools: ToolRegistry | None = None,
    ) -> None:
        """:raises ConfigError: if `config.tools` names an unknown tool."""
        self.llm = llm
        self.config = config or AgentConfig()
        if store is None:
            store = SessionStore.in_dir(data_dir) if data_dir is not None else SessionStore()
        self.store = store
        self.tools = tools if tools is not None else default_tools(self.config.tools)
        self._parallel = asyncio.Semaphore(self.config.max_parallel_turns)
        self._sessions: dict[str, _Session] = {}

    async def open(self) -> None:
        """Open the session store now, so a bad `data_dir` fails at startup."""
        await self.store.open()

    async def aclose(self) -> None:
        """Abort running turns, then close the session store."""
        for key in list(self._sessions):
            await self.stop(key, reason=ev.SHUTDOWN)
        await self.store.aclose()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- turns ------------------------------------------------------------------------------

    def run_turn(
        self,
        session: str,
        text: str,
        *,
        inbound: InboundMessage | None = None,
        publish: Publish | None = None,
    ) -> AsyncIterator[ev.RunEvent]:
        """Answer `text` in `session`, yielding run events; never raises for model errors.

        Slash commands (`/help`, `/new`, `/stop`, `/status`) are answered at once, even while a
        turn runs. Otherwise the turn waits for the session's previous turn and a free slot
        (`max_parallel_turns`). Events start with `TurnStarted` and end with exactly one of
        `TurnFinished`, `TurnAborted`, `TurnFailed`. Leaving the iteration early aborts the turn.
        `inbound` and `publish` let the `message` tool write to the chat.
        """
        command = parse_command(text)
        if command is not None:
            return self._command_events(session, command)
        return self._run(session, text, (), ToolContext(session, inbound, publish), True)

    def run_followup(
        self,
        session: str,
        queued: Sequence[Queued],
        *,
        inbound: InboundMessage | None = None,
        publish: Publish | None = None,
    ) -> AsyncIterator[ev.RunEvent]:
        """A turn for messages left in the steering queue (see `take_followup`): the first is
        the user message, the others arrive as `SteeringInjected`. Like picoclaw, it skips
        the steering poll before its first model call."""
        first, *rest = queued
        return self._run(session, first.text, rest, ToolContext(session, inbound, publish), False)

    async def _run(
        self,
        session: str,
        text: str,
        extra: Sequence[Queued],
        ctx: ToolContext,
        poll_first: bool,
    ) -> AsyncIterator[ev.RunEvent]:
        state = self._session(session)
        events: asyncio.Queue[ev.RunEvent] = asyncio.Queue()
        turn = _Turn()
        coro = self._turn(state, turn, text, extra, ctx, poll_first, events.put_nowait)
        task = turn.task = asyncio.create_task(coro, name=f"turn {session}")
        state.turns.add(turn)
        task.add_done_callback(lambda _: self._turn_done(state, turn))
        try:
            while True:
                event = await events.get()
                yield event
                if isinstance(event, _TERMINAL):
                    return
        finally:
            if not task.done():
                task.cancel()  # the caller went away: abort
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _session(self, key: str) -> _Session:
        state = self._sessions.get(key)
        if state is None:
            steering = SteeringQueue(self.config.steering_mode)
            state = self._sessions[key] = _Session(key, steering)
        return state

    def _turn_done(self, state: _Session, turn: _Turn) -> None:
        state.turns.discard(turn)
        # Forget idle sessions (their history is in the store), unless something is waiting.
        idle = not state.turns and not state.steering and not state.lock.locked()
        if idle and self._sessions.get(state.key) is state:
            del self._sessions[state.key]

    async def _turn(
        self,
        state: _Session,
        turn: _Turn,
        text: str,
        extra: Sequence[Queued],
        ctx: ToolContext,
        poll_first: bool,
        emit: Emit,
    ) -> None:
        emit(ev.TurnStarted(new_id(), state.key))
        try:
            # The session lock first: a waiting turn must not hold one of the parallel slots.
            async with state.lock, self._parallel:
                state.interrupted = False
                stored = await self.store.load(state.key)
                history = trim_history(stored, self.config.max_history_messages)
                messages: list[Message] = [{"role": "user", "content": text}]
                self._inject(extra, messages, emit)
                reply = await self._converse(state, history, messages, ctx, poll_first, emit)
                await self.store.append(state.key, messages, keep=self.config.max_history_messages)
        except asyncio.CancelledError:
            emit(ev.TurnAborted(turn.reason))
            raise
        except LLMError as exc:
            log.warning("turn failed in %s: %s", state.key, exc)
            emit(ev.TurnFailed(exc.user_message))
        except StorageError as exc:  # nothing of the turn was saved; the reply is not sent
            log.error("turn in %s not saved: %s", state.key, exc)
            emit(ev.TurnFailed(STORAGE_FAILURE))
        except Exception:
            log.exception("turn crashed in %s", state.key)
            emit(ev.TurnFailed(GENERIC_FAILURE))
        else:
            emit(ev.TurnFinished(reply))

    async def _converse(
        self,
        state: _Session,
        history: list[Message],
        turn: list[Message],
        ctx: ToolContext,
        poll_first: bool,
        emit: Emit,
    ) -> str:
        """Model calls and tool calls until the model answers without tools; returns the reply."""
        system: Message = {"role": "system", "content": self.config.system_prompt}
        schemas = self.tools.schemas() or None
        parts: list[str] = []  # every text delta of the turn: the full reply
        iteration = 0
        while True:
            if iteration or poll_first:
                self._inject(state.steering.take(), turn, emit)
            limit_hit = iteration >= self.config.max_tool_iterations
            last = limit_hit or state.interrupted  # then: one call without tools
            tools = None if last else schemas
            text, calls = await self._complete([system, *history, *turn], tools, parts, emit)
            if tools is None:
                calls = []  # a model that calls tools it was not offered is not obeyed
            if not calls and limit_hit and not text.strip():
                text = self._say(LIMIT_NOTICE, parts, emit)
            message: Message = {"role": "assistant", "content": text}
            if calls:
                message["content"] = text or None
                message["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments},
                    }
                    for c in calls
                ]
            turn.append(message)
            if not calls:
                return "".join(parts)
            await self._run_tools(state, calls, turn, ctx, emit)
            iteration += 1

    async def _complete(
        self,
        messages: list[Message],
        tools: list[dict[str, Any]] | None,
        parts: list[str],
        emit: Emit,
    ) -> tuple[str, list[ToolCall]]:
        """One model call: streams text out as it comes; returns its text and tool calls."""
        own: list[str] = []
        calls: list[ToolCall] = []
        stream = self.llm.stream(messages, tools)
        try:
            async for event in stream:
                if isinstance(event, LLMText) and event.text:
                    if not own and "".join(parts).strip():
                        parts.append(SEPARATOR)
                        emit(ev.TextDelta(SEPARATOR))
                    own.append(event.text)
                    parts.append(event.text)
                    emit(ev.TextDelta(event.text))
                elif isinstance(event, LLMReasoning) and event.text:
                    emit(ev.ReasoningDelta(event.text))
                elif isinstance(event, ToolCall):
                    calls.append(event)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()  # closes the HTTP stream on abort
        return "".join(own), calls

    @staticmethod
    def _say(text: str, parts: list[str], emit: Emit) -> str:
        if "".join(parts).strip():
            parts.append(SEPARATOR)
            emit(ev.TextDelta(SEPARATOR))
        parts.append(text)
        emit(ev.TextDelta(text))
        return text

    async def _run_tools(
        self,
        state: _Session,
        calls: list[ToolCall],
        turn: list[Message],
        ctx: ToolContext,
        emit: Emit,
    ) -> None:
        """One after another, checking steering and interrupts after each call."""
        for i, call in enumerate(calls):
            if i and (state.steering or state.interrupted):
                note = SKIPPED if state.steering else INTERRUPTED
                turn += [{"role": "tool", "tool_call_id": c.id, "content": note} for c in calls[i:]]
                return
            try:
                args = parse_arguments(call.arguments)
            except ToolError:
                args = {}
            emit(ev.ToolStarted(call.id, call.name, args))
            result = await self.tools.call(call.name, call.arguments, ctx)
            turn.append({"role": "tool", "tool_call_id": call.id, "content": result.content})
            emit(ev.ToolFinished(call.id, call.name, result.content, result.error))

    @staticmethod
    def _inject(items: Sequence[Queued], turn: list[Message], emit: Emit) -> None:
        for item in items:
            turn.append({"role": "user", "content": item.text})
            emit(ev.SteeringInjected(item.text, item.message_id))

    # -- steering and control ---------------------------------------------------------------

    def is_running(self, session: str) -> bool:
        state = self._sessions.get(session)
        return bool(state and state.turns)

    def steer(self, session: str, text: str, *, message_id: str | None = None) -> bool:
        """Queue `text` for the session's running turn; False when the queue is full."""
        return self._session(session).steering.push(Queued(text, message_id))

    def queued(self, session: str) -> int:
        state = self._sessions.get(session)
        return len(state.steering) if state else 0

    def take_followup(self, session: str) -> list[Queued]:
        """What a follow-up turn should answer: one queued message, or all in mode ``all``."""
        state = self._sessions.get(session)
        return state.steering.take() if state else []

    def interrupt(self, session: str) -> bool:
        """Graceful interrupt: finish the current tool, skip the rest, then one last model
        call without tools. False if no turn is running."""
        state = self._sessions.get(session)
        if not state or not state.turns:
            return False
        state.interrupted = True
        return True

    async def stop(self, session: str, *, reason: str = "stopped") -> bool:
        """Hard abort: clear the steering queue and cancel the session's turns (their history
        is rolled back). Waits briefly for them to unwind. True if there was anything to stop."""
        state = self._sessions.get(session)
        if state is None:
            return False
        dropped = state.steering.clear()
        turns = [t for t in state.turns if t.task is not None and not t.task.done()]
        for turn in turns:
            turn.reason = reason
            assert turn.task is not None
            turn.task.cancel()
        if turns:
            await asyncio.wait([t.task for t in turns if t.task], timeout=STOP_WAIT)
        return bool(turns or dropped)

    async def reset(self, session: str) -> None:
        """Start a fresh conversation: abort the running turn and forget the history."""
        await self.stop(session, reason="new session")
        state = self._session(session)
        async with state.lock:
            await self.store.clear(session)

    async def history(self, session: str) -> list[dict[str, str]]:
        """The conversation as the user saw it: user and assistant texts, oldest first."""
        return [
            {"role": m["role"], "content": m["content"]}
            for m in await self.store.load(session)
            if m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str)
            if m["content"].strip()
        ]

    async def _command_events(self, session: str, command: Command) -> AsyncIterator[ev.RunEvent]:
        yield ev.TurnStarted(new_id(), session)
        reply = await run_command(self, session, command)
        yield ev.TextDelta(reply)  # like a model reply: the deltas add up to the final text
        yield ev.TurnFinished(reply)
