"""Streaming replies: one message edited to the latest text at a fixed flush interval.

    TextDelta ─► buffer ─► tick (every `interval`) ─► send first / edit when changed ─► Dispatcher

- A timer drives flushes, not tokens; a flush is awaited before the next tick, so two never
  overlap, and every flush goes through the dispatcher's lanes and rate budgets. A rate-limited
  edit is skipped (`droppable`), the next tick sends the newer text.
- Mid-stream text is plain (half-written Markdown cannot break a parser); the final edit is
  rendered for the platform (the dispatcher falls back to plain text if the markup is refused).
- Past the platform limit the message is frozen at a fence-safe split point with its final
  rendering, and streaming continues in a new message: nothing duplicated, nothing lost.
- Channels that cannot edit get whole pieces: the text before each tool call, then the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from dataclasses import replace

from picobot.core import events as ev
from picobot.core.channel import Capabilities
from picobot.core.errors import ChannelError
from picobot.core.messages import Deliver, InboundMessage, Kind, OutboundMessage, reply_to
from picobot.core.tasks import cancel_and_wait
from picobot.text.chunks import measure_for, render_chunks
from picobot.text.render import Rendered
from picobot.text.split import split_pieces

log = logging.getLogger("picobot.streaming")

Submit = Deliver  # the outbound door: record, deliver, and give the message ids

STOPPED_NOTE = "⏹ Stopped."


def _tool_line(event: ev.ToolStarted) -> str:
    return f"🔧 {event.name}…"


class _Text:
    """The reply so far, with a paragraph break where a tool call interrupted it.

    Deltas are joined when the text is read (once a tick), not copied on every token.
    """

    def __init__(self) -> None:
        self._parts: list[str] = []

    @property
    def text(self) -> str:
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    @text.setter
    def text(self, value: str) -> None:
        self._parts = [value]

    def add(self, delta: str) -> None:
        self._parts.append(delta)

    def break_paragraph(self) -> None:
        if self.text.strip() and not self.text.endswith("\n\n"):
            self.text = self.text.rstrip() + "\n\n"


class StreamingReply:
    """A reply writer for channels that can edit: shows the reply growing in one message."""

    def __init__(
        self,
        inbound: InboundMessage,
        caps: Capabilities,
        submit: Submit,
        *,
        interval: float,
        tool_progress: bool = False,
        mode: str = "edit",
    ) -> None:
        self.inbound = inbound
        self.caps = caps
        self.submit = submit
        self.interval = interval
        self.tool_progress = tool_progress
        self._body = _Text()  # what the model wrote, in the current (unfrozen) message
        self._progress: list[str] = []  # tool lines shown under the text while streaming
        self._message_id: str | None = None  # the live message
        self._shown = ""  # text of the last successful flush
        self._shown_as: Rendered | None = None  # ... and how it was rendered
        self._fallback = False  # the first send failed: deliver the reply whole at the end
        self._ended = False
        self._shutdown = False
        self._loop: asyncio.Task[None] | None = None
        # Until the first tick the timer waits without a task: a reply that ends sooner (many
        # do, with a fast model) never needs one.
        self._first_tick: asyncio.TimerHandle | None = None
        self._start = 0.0  # when the first text came: ticks at start + k * interval
        self._flushing = asyncio.Lock()  # a flush in flight is never cancelled halfway
        # Native drafts (Telegram sendMessageDraft) show the stream in private chats without
        # edits; the reply still ends as a real message. None: stream by edits.
        draft = mode == "draft" and caps.native_streaming and not inbound.is_group
        self._draft_id = ((zlib.crc32(inbound.id.encode()) & 0x7FFFFFFF) or 1) if draft else None
        self.flushes = 0  # successful sends and edits while streaming (for tests and bench)

    @property
    def _live(self) -> str:
        if not self._progress:
            return self._body.text
        return (self._body.text.rstrip() + "\n\n" + "\n".join(self._progress)).strip()

    # -- ReplyWriter ----------------------------------------------------------------------

    async def feed(self, event: ev.RunEvent) -> None:
        if isinstance(event, ev.TextDelta):
            self._body.add(event.text)
            self._progress.clear()
            if self._loop is None and self._first_tick is None and not self._fallback:
                loop = asyncio.get_running_loop()
                self._start = loop.time()
                self._first_tick = loop.call_at(self._start + self.interval, self._begin)
        elif isinstance(event, ev.ToolStarted):
            self._body.break_paragraph()
            if self.tool_progress:
                self._progress.append(_tool_line(event))
        elif isinstance(event, ev.TurnFinished):
            await self._end()
        elif isinstance(event, ev.TurnFailed):
            await self._end(note=event.message)
        elif isinstance(event, ev.TurnAborted) and event.reason == ev.SHUTDOWN:
            self._shutdown = True
            await self._end(send=False)  # the turn runs again after the restart
        elif isinstance(event, ev.TurnAborted):
            await self._end(note=STOPPED_NOTE)

    async def finish(self) -> None:
        if not self._ended:  # the turn ended without a verdict (cancelled): keep what was shown
            await self._end()
        if not self._shutdown:  # at shutdown the placeholder stays for the rerun to edit
            with contextlib.suppress(ChannelError):
                await self.submit(reply_to(self.inbound, "", kind=Kind.DONE))

    # -- flushing ---------------------------------------------------------------------------

    def _begin(self) -> None:
        self._first_tick = None
        self._loop = asyncio.create_task(self._run(), name="stream flush")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = self._start
        tick = 1
        while not self._fallback:
            # A fixed timer: ticks at start + k * interval; a slow flush skips missed ticks.
            await asyncio.sleep(max(0.0, start + tick * self.interval - loop.time()))
            async with self._flushing:
                await self._flush()
            tick = max(tick + 1, int((loop.time() - start) / self.interval) + 1)

    async def _flush(self) -> None:
        text = self._live
        if not text.strip() or text == self._shown:
            return
        chunks = render_chunks(text, self.caps, plain=True)
        if len(chunks) > 1:
            await self._freeze()
            return
        if self._draft_id is not None:
            await self._flush_draft(text, chunks[0].rendered)
            return
        try:
            if self._message_id is None:
                ids = await self.submit(self._out(text, plain=True))
                self._message_id = ids[0] if ids else None
            else:
                ids = await self.submit(
                    self._out(text, plain=True, edit_of=self._message_id, droppable=True)
                )
        except ChannelError as exc:
            if self._message_id is None:
                log.info("first streamed send failed, delivering whole: %s", exc)
                self._fallback = True  # the loop ends after this flush
            return
        if ids:
            self._shown, self._shown_as = text, chunks[0].rendered
            self.flushes += 1

    async def _flush_draft(self, text: str, rendered: Rendered) -> None:
        draft = self._out(text, kind=Kind.DRAFT, plain=True, droppable=True)
        try:
            ids = await self.submit(replace(draft, draft_id=self._draft_id))
        except ChannelError as exc:
            log.info("drafts refused in %s, streaming by edits: %s", self.inbound.chat_id, exc)
            self._draft_id = None
            return
        if ids:
            self._shown, self._shown_as = text, None  # a draft is not the message itself
            self.flushes += 1

    async def _freeze(self) -> None:
        """Finish the current message at a fence-safe split point; continue in a new one."""
        pieces = split_pieces(self._body.text, self.caps.max_length, measure_for(self.caps))
        if len(pieces) < 2:
            return
        for piece in pieces[:-1]:
            # The first frozen piece replaces the live message; others are new messages.
            await self.submit(self._out(piece.text, edit_of=self._message_id))
            self._message_id = None
        # Continue from the source, not the last piece: it may carry a synthetic closing fence.
        last = pieces[-1]
        self._body.text = last.reopen + self._body.text[last.start :]
        self._shown, self._shown_as = "", None

    async def _end(self, *, note: str | None = None, send: bool = True) -> None:
        """Stop the timer and show the whole reply (with `note`), rendered, once."""
        if self._ended:
            return
        self._ended = True
        if self._first_tick is not None:
            self._first_tick.cancel()
            self._first_tick = None
        if self._loop is not None:
            async with self._flushing:  # let a flush in flight land, so its message id is known
                self._loop.cancel()
            await cancel_and_wait(self._loop)
        # Only now: a freeze in flight moved part of the text into messages of its own.
        final = self._with_note(note) if note is not None else self._body.text
        if not send or not final.strip():
            return
        edit_of = None if self._fallback else self._message_id
        if edit_of is not None and _unchanged(final, self.caps, self._shown_as):
            return  # the last flush already shows exactly the final rendering
        try:
            await self.submit(self._out(final, edit_of=edit_of))
        except ChannelError as exc:
            log.warning("final reply in %s failed: %s", self.inbound.session_key, exc)

    def _with_note(self, note: str) -> str:
        text = self._body.text.rstrip()
        return f"{text}\n\n{note}" if text else note

    def _out(self, text: str, **kw: object) -> OutboundMessage:
        msg = reply_to(self.inbound, text)
        return OutboundMessage(
            channel=msg.channel,
            chat_id=msg.chat_id,
            text=text,
            in_reply_to=msg.in_reply_to,
            reply_to=msg.reply_to if self._message_id is None else None,
            thread=msg.thread,
            is_group=msg.is_group,
            **kw,  # type: ignore[arg-type]
        )


def _unchanged(final: str, caps: Capabilities, shown: Rendered | None) -> bool:
    chunks = render_chunks(final, caps)
    return len(chunks) == 1 and chunks[0].rendered == shown


class PieceReply:
    """A reply writer for channels that cannot edit: whole pieces, in order.

    The text written before each tool call is sent as its own message (nothing is shown twice),
    the rest when the turn ends.
    """

    def __init__(self, inbound: InboundMessage, submit: Submit) -> None:
        self.inbound = inbound
        self.submit = submit
        self._pending = ""
        self._shutdown = False

    async def feed(self, event: ev.RunEvent) -> None:
        if isinstance(event, ev.TextDelta):
            self._pending += event.text
        elif isinstance(event, ev.ToolStarted | ev.TurnFinished):
            await self._take()
        elif isinstance(event, ev.TurnFailed):
            self._pending = self._pending.rstrip() + "\n\n" + event.message
            await self._take()
        elif isinstance(event, ev.TurnAborted) and event.reason == ev.SHUTDOWN:
            self._pending, self._shutdown = "", True  # the turn runs again after the restart
        elif isinstance(event, ev.TurnAborted):
            self._pending = self._pending.rstrip() + "\n\n" + STOPPED_NOTE
            await self._take()

    async def _take(self) -> None:
        piece, self._pending = self._pending.strip(), ""
        if piece:
            try:  # (not contextlib.suppress: this and `finish` run for every reply)
                await self.submit(reply_to(self.inbound, piece))
            except ChannelError:
                pass  # logged by the dispatcher

    async def finish(self) -> None:
        if self._shutdown:
            return  # keep the placeholder for the rerun
        await self._take()
        try:
            await self.submit(reply_to(self.inbound, "", kind=Kind.DONE))
        except ChannelError:
            pass
