"""The agent: runs turns — model calls, tool calls, steering — one at a time per session.

A turn runs in its own task, so `/stop` can abort it wherever it is (an LLM stream is closed, a
tool is cancelled). Its messages reach the session store only when it ends normally: an
aborted or failed turn leaves the history exactly as it was when the turn began.

    registry.py      sessions: locks, steering queues, running turns, /stop
    conversation.py  one turn's model/tool loop
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from picobot.agent.commands import Command, Reminders, parse_command, run_command
from picobot.agent.conversation import Conversation, Emit, for_history, inject
from picobot.agent.llm import LLM, LLMError
from picobot.agent.media import AgentMedia
from picobot.agent.registry import Session, SessionRegistry, Turn
from picobot.agent.steering import Queued
from picobot.agent.tools import Publish, ToolContext, ToolRegistry, default_tools
from picobot.config import AgentConfig
from picobot.core import events as ev
from picobot.core.errors import StorageError
from picobot.core.eventlines import EVENT_LINES
from picobot.core.messages import InboundMessage, Message, new_id
from picobot.core.tasks import cancel_and_wait
from picobot.storage.sessions import HistoryStore, SessionStore, trim_history, visible_history

log = logging.getLogger("picobot.agent")

GENERIC_FAILURE = "⚠️ Something went wrong. Please try again."
STORAGE_FAILURE = "⚠️ I could not save this conversation (storage problem). Please try later."
_TERMINAL = (ev.TurnFinished, ev.TurnAborted, ev.TurnFailed)


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
        store: HistoryStore | None = None,
        tools: ToolRegistry | None = None,
        reminders: Reminders | None = None,
        media: AgentMedia | None = None,
    ) -> None:
        """:raises ConfigError: if `config.tools` names an unknown tool.

        `reminders` (the scheduler) answers `/reminders` and `/cancel ID`; `media` makes the
        turns read a message's files (images, voice notes, documents).
        """
        self._reminders = reminders
        self.llm = llm
        self.media = media
        self.config = config or AgentConfig()
        if store is None:
            store = SessionStore.in_dir(data_dir) if data_dir is not None else SessionStore()
        self.store = store
        self.tools = tools if tools is not None else default_tools(self.config.tools)
        self.sessions = SessionRegistry(self.config.steering_mode)
        self._parallel = asyncio.Semaphore(self.config.max_parallel_turns)

    async def open(self) -> None:
        """Open the session store now, so a bad `data_dir` fails at startup."""
        await self.store.open()

    async def aclose(self) -> None:
        """Abort running turns, then close the session store."""
        for key in self.sessions.keys():
            await self.sessions.stop(key, reason=ev.SHUTDOWN)
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
            return self._command_events(session, command, text, inbound)
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
        state = self.sessions.session(session)
        events: asyncio.Queue[ev.RunEvent] = asyncio.Queue()
        turn = Turn()

        def emit(event: ev.RunEvent) -> None:
            turn.over = turn.over or isinstance(event, _TERMINAL)
            events.put_nowait(event)

        def done(_: asyncio.Task[None]) -> None:
            if not turn.over:  # cancelled (/stop, shutdown) before it began: no event of its own
                events.put_nowait(ev.TurnAborted(turn.reason))
            self.sessions.turn_done(state, turn)

        coro = self._turn(state, turn, text, extra, ctx, poll_first, emit)
        task = turn.task = asyncio.create_task(coro, name=f"turn {session}")
        state.turns.add(turn)
        task.add_done_callback(done)
        try:
            while True:
                event = await events.get()
                yield event
                if isinstance(event, _TERMINAL):
                    return
        finally:
            if not task.done():
                await cancel_and_wait(task)  # the caller went away: abort

    async def _turn(
        self,
        state: Session,
        turn: Turn,
        text: str,
        extra: Sequence[Queued],
        ctx: ToolContext,
        poll_first: bool,
        emit: Emit,
    ) -> None:
        emit(ev.TurnStarted(new_id(), state.key))
        started = time.monotonic()
        try:
            # The session lock first: a waiting turn must not hold one of the parallel slots.
            async with state.lock, self._parallel:
                stored = await self.store.load(state.key)
                history = trim_history(stored, self.config.max_history_messages)
                user: Message = {"role": "user", "content": text}
                inbound, media = ctx.inbound, self.media
                prepare = None
                if media is not None:
                    prepare = functools.partial(media.prepare, publish=ctx.publish)
                    if inbound is not None and inbound.attachments:
                        user = await prepare(inbound)
                messages: list[Message] = [user]
                await inject(extra, messages, emit, prepare)
                conversation = Conversation(
                    self.llm,
                    self.tools,
                    self.config,
                    state.steering,
                    ctx,
                    emit,
                    for_model=media.for_model if media is not None else None,
                    store_images=media.store_images if media is not None else None,
                    prepare=prepare,
                )
                reply = await conversation.run(history, messages, poll_first)
                await self.store.append(
                    state.key, for_history(messages), keep=self.config.max_history_messages
                )
                if user.get("voice") and media and inbound and ctx.publish:
                    await media.voice_reply(inbound, reply, ctx.publish)
            if EVENT_LINES.take(log):
                log.info(
                    "turn finished in %s: %.1f s, %d prompt + %d completion tokens",
                    *(state.key, time.monotonic() - started, *conversation.tokens),
                )
        except asyncio.CancelledError:
            emit(ev.TurnAborted(turn.reason))
            raise
        except LLMError as exc:
            log.warning("turn failed in %s: %s", state.key, exc)
            emit(ev.TurnFailed(exc.user_message, str(exc)))
        except StorageError as exc:  # nothing of the turn was saved; the reply is not sent
            log.error("turn in %s not saved: %s", state.key, exc)
            emit(ev.TurnFailed(STORAGE_FAILURE, str(exc)))
        except Exception:
            log.exception("turn crashed in %s", state.key)
            emit(ev.TurnFailed(GENERIC_FAILURE))
        else:
            emit(ev.TurnFinished(reply))

    # -- steering and control (the session registry's, for the agent loop and commands) ----

    def is_running(self, session: str) -> bool:
        return self.sessions.is_running(session)

    def steer(
        self,
        session: str,
        text: str,
        *,
        message_id: str | None = None,
        inbound: InboundMessage | None = None,
    ) -> bool:
        """Queue `text` for the session's running turn; False when the queue is full.

        `inbound` is kept when it has files, so the turn can read them when it takes it.
        """
        keep = inbound if inbound is not None and inbound.attachments else None
        return self.sessions.steer(session, Queued(text, message_id, keep))

    def queued(self, session: str) -> int:
        return self.sessions.queued(session)

    def take_followup(self, session: str) -> list[Queued]:
        """What a follow-up turn should answer: one queued message, or all in mode ``all``."""
        return self.sessions.take_followup(session)

    async def stop(self, session: str, *, reason: str = "stopped") -> bool:
        """Hard abort: clear the steering queue and cancel the session's turns (their history
        is rolled back). Waits briefly for them to unwind. True if there was anything to stop."""
        return await self.sessions.stop(session, reason=reason)

    async def reset(self, session: str) -> None:
        """Start a fresh conversation: abort the running turn and forget the history."""
        await self.stop(session, reason="new session")
        state = self.sessions.session(session)
        async with state.lock:
            await self.store.clear(session)

    async def count(self, session: str) -> int:
        """How many messages the session's history holds."""
        return await self.store.count(session)

    @property
    def model_name(self) -> str:
        return self.llm.name

    @property
    def history_limit(self) -> int:
        return self.config.max_history_messages

    async def history(self, session: str) -> list[Message]:
        """The conversation as the user saw it, oldest first (see `visible_history`)."""
        return visible_history(await self.store.transcript(session))

    @property
    def reminders(self) -> Reminders | None:
        return self._reminders

    def tool_names(self) -> list[str]:
        """The tools offered now (MCP servers' tools come and go)."""
        return self.tools.names()

    async def _command_events(
        self, session: str, command: Command, text: str, inbound: InboundMessage | None
    ) -> AsyncIterator[ev.RunEvent]:
        yield ev.TurnStarted(new_id(), session)
        reply = await run_command(self, session, command, inbound)
        if command.name != "stop":  # kept for the user's history (the model never sees it)
            note = [
                {"role": "user", "content": text.strip()},
                {"role": "assistant", "content": reply},
            ]
            await self.store.append_note(session, note)
        yield ev.TextDelta(reply)  # like a model reply: the deltas add up to the final text
        yield ev.TurnFinished(reply)
