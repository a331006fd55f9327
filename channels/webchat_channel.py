"""The built-in web chat: a page at ``/`` and a small JSON + SSE API on the shared server.

    POST /api/messages ─► InboundMessage(channel="web") ─► sink (Intake) ─► agent
    agent listener (inbound, event) ─► RunBroker[inbound.id] ─► GET /api/runs/{id}/events

Replies do not travel through the dispatcher: the page streams them from the run's events, so
`send`/`edit`/`delete` only forward stray messages (a reminder, the `message` tool, a flood
warning) as ``notice`` events: to the session's own stream when the page watches it
(``GET /api/sessions/{id}/events``), else to the session's open runs. One that comes while no
run is open (a reminder) is also kept in the history, so a page that was closed shows it.
The run id is the `InboundMessage.id`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from picobot.core import events as ev
from picobot.core import metrics
from picobot.core.channel import (
    NO_SERVICES,
    Capabilities,
    Channel,
    FileStore,
    FileTransfer,
    InboundSink,
    Rendered,
    ServesHttp,
    Services,
    State,
    WatchesRuns,
    WritesReplies,
)
from picobot.core.errors import BadRequest
from picobot.core.messages import Attachment, InboundMessage, Kind, Sender, new_id, reply_to
from picobot.webui.broker import RunBroker, RunsFull, Subscription
from picobot.webui.limits import WebLimits

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["TOOL_RESULT_PREVIEW", "WebChatChannel"]

log = logging.getLogger("picobot.web")

TOOL_RESULT_PREVIEW = 2000  # characters of a tool's result shown in the page
DEFAULT_MAX_TEXT = 16_000
DEFAULT_INBOUND_RATE = 10  # per session per minute (channels.web.inbound_rate)
DEFAULT_ADDRESS_RATE = 30  # per client address per minute (channels.web.address_rate)
PREFIX = "web:"  # the session keys of the web chat (`InboundMessage.session_key`)
STREAM = "session:"  # + session id: the broker's standing run of a session's stray messages


class WebReply:
    """The web chat's reply writer: the page gets the events from the broker's listener, so
    this only ends the run (``done``) and closes the dispatcher's bookkeeping for the message
    (the Intake opened it with ``accepted``; ``done`` with no text sends nothing)."""

    def __init__(self, channel: WebChatChannel, inbound: InboundMessage) -> None:
        self.channel = channel
        self.inbound = inbound
        self._interrupted = False
        self._started = time.monotonic()

    async def feed(self, event: ev.RunEvent) -> None:
        if isinstance(event, ev.TurnAborted) and event.reason == ev.SHUTDOWN:
            self._interrupted = True
        elif isinstance(event, ev.TurnFinished | ev.TurnFailed):
            # Streamed to the page as it was written: one chunk, delivered when the turn ends.
            ms = (time.monotonic() - self._started) * 1000
            log.info("delivered %s (1 chunk, %.0f ms)", self.inbound.session_key, ms)

    async def finish(self) -> None:
        # A turn cut by shutdown runs again after the restart, under the same run id: no
        # ``done``, so the page keeps waiting for it (and resumes it) instead of giving up.
        if not self._interrupted:
            self.channel.broker.finish(self.inbound.id)
        post = self.channel.services.post
        if post is not None:
            try:
                await post(reply_to(self.inbound, "", kind=Kind.DONE))
            except KeyError:  # the outbound door no longer knows the channel (shutting down)
                pass


class WebChatChannel(Channel, WritesReplies, WatchesRuns, ServesHttp, FileTransfer):
    """The web chat: it writes its own replies (run events over SSE) and serves the page and
    the API on the shared server; its token is checked by the server's guard for every
    ``/api/*`` call (`picobot.runtime.guard`). Without `services` (tests), runs still work
    through `broker` directly.

    Files: uploads are stored by the HTTP handler on arrival (`accept` gets them stored);
    files for the chat (`send_file`) reach the page as ``attachment`` events linking to
    ``GET /api/media/{id}``.
    """

    name = "web"
    # Files reach the page as links to the store: no upload, so no limit of its own.
    capabilities = Capabilities(max_length=1_000_000, format="markdown", max_upload=2**63)

    def __init__(
        self,
        config: Any,
        sink: InboundSink,
        services: Services = NO_SERVICES,
        *,
        broker: RunBroker | None = None,
    ) -> None:
        super().__init__(config, sink, services)
        self.broker = broker if broker is not None else RunBroker()
        self.token: str | None = _secret(getattr(config, "token", None))
        self.max_text: int = getattr(config, "max_text", DEFAULT_MAX_TEXT)
        self.limits = WebLimits(
            getattr(config, "inbound_rate", DEFAULT_INBOUND_RATE),
            getattr(config, "address_rate", DEFAULT_ADDRESS_RATE),
        )
        name = services.model or "picobot"
        self.model = "demo model" if name == "demo" else name  # for the page's header
        self.boot = new_id()  # changes when the run logs are lost (a restart)
        self._routes: list[web.RouteDef] | None = None

    @property
    def media(self) -> FileStore | None:
        return self.services.files

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self.set_state(State.CONNECTED)

    async def stop(self) -> None:
        # Ends every event stream, so the HTTP server's cleanup does not wait for them.
        self.broker.close()

    # -- inbound ------------------------------------------------------------------------------

    async def accept(
        self,
        text: str,
        session: str,
        attachments: tuple[Attachment, ...] = (),
        address: str = "",
    ) -> str:
        """Hand one message from the page (from client `address`) to the core; its run id.

        :raises picobot.webui.limits.TooManyMessages: over the session's or address's rate.
        :raises picobot.webui.broker.RunsFull: too many runs in progress.
        :raises picobot.core.errors.BusClosed: while shutting down (no run was created).
        :raises picobot.core.errors.StorageError: if it could not be recorded (disk full).
        """
        await self.limits.take(session, address)
        msg = InboundMessage(
            channel=self.name,
            chat_id=session,
            sender=Sender("web"),
            text=text,
            attachments=attachments,
        )
        self.broker.open(msg.id, session)  # before the sink: events may start at once
        try:
            await self.sink(msg)
        except BaseException:
            self.broker.discard(msg.id)
            raise
        return msg.id

    async def history(self, session: str) -> list[dict[str, Any]]:
        """The session as the user saw it, oldest first: ``{"role", "text", "attachments"?}``,
        plus ``"note": true`` on commands and their replies, and tool calls as ``{"role": "tool",
        "name", "arguments", "text", "error"}``."""
        history = self.services.history
        if history is None:
            return []
        shown: list[dict[str, Any]] = []
        for m in await history(PREFIX + session):
            entry = {"role": m["role"], "text": m["content"]}
            if m["role"] == "tool":
                entry["text"] = m["content"][:TOOL_RESULT_PREVIEW]
                entry |= {"name": m["name"], "arguments": _json_object(m["arguments"])}
                entry["error"] = m["error"]
            elif m.get("note"):
                entry["note"] = True
            if m.get("attachments"):
                entry["attachments"] = [
                    self.describe(Attachment.from_json(a)) for a in m["attachments"]
                ]
            shown.append(entry)
        return shown

    async def sessions(self) -> list[dict[str, Any]]:
        """The web chat's conversations, most recently active first."""
        directory = self.services.directory
        if directory is None:
            return []
        return [
            {
                "id": s.key[len(PREFIX) :],
                "title": s.title,
                "created": s.created,
                "updated": s.updated,
            }
            for s in await directory.sessions(PREFIX)
        ]

    async def rename_session(self, session: str, title: str) -> bool:
        """False if there is no such conversation."""
        directory = self.services.directory
        return directory is not None and await directory.rename(PREFIX + session, title)

    async def delete_session(self, session: str) -> None:
        """Stop the conversation's running turn, then forget it (idempotent)."""
        if self.services.forget is not None:
            await self.services.forget(PREFIX + session)

    @staticmethod
    def describe(attachment: Attachment) -> dict[str, Any]:
        """An attachment as the page sees it: a link into ``/api/media`` and what it is."""
        return {
            "url": f"/api/media/{attachment.id}",
            "name": attachment.name,
            "kind": str(attachment.kind),
            "mime": attachment.mime,
            "size": attachment.size,
            "width": attachment.width,
            "height": attachment.height,
        }

    def session_events(self, session: str, after: int | None) -> Subscription:
        """The session's stray messages (``notice``, ``attachment``) from now on (`after`
        None) or after event `after` (a reconnect).

        :raises picobot.webui.broker.RunsFull: too many runs in progress.
        """
        self.broker.open(STREAM + session, session, standing=True)
        return self.broker.subscribe(STREAM + session, after)

    async def _stray(self, chat_id: str, name: str, data: dict[str, Any]) -> bool:
        """Show a message outside a reply; True if it was (or will be) seen live."""
        runs = list(self.broker.runs_of(chat_id))
        if self.broker.watched(STREAM + chat_id):
            self.broker.publish(STREAM + chat_id, name, data)
        else:
            for run_id in runs:
                self.broker.publish(run_id, name, data)
        return bool(runs)

    # -- run events -----------------------------------------------------------------------------

    def on_run_event(self, inbound: InboundMessage, event: ev.RunEvent) -> None:
        """The agent loop's listener: translate one run event for the page."""
        if inbound.channel != self.name:
            return
        run_id = inbound.id
        if isinstance(event, ev.TurnStarted):
            try:
                self.broker.open(run_id, inbound.chat_id)  # e.g. a run whose log expired
            except RunsFull:
                return  # nobody can watch it; the turn still runs and is saved
        named = _translate(inbound, event)
        if named is not None:
            self.broker.publish(run_id, *named)
        if isinstance(event, ev.TurnFinished):
            metrics.OUTBOUND.labels(self.name, "sent").inc()
        elif isinstance(event, ev.TurnFailed):
            metrics.OUTBOUND.labels(self.name, "failed").inc()

    def make_writer(self, inbound: InboundMessage) -> WebReply:
        return WebReply(self, inbound)

    # -- outbound (the dispatcher's calls) -------------------------------------------------------

    async def send(
        self,
        chat_id: str,
        message: Rendered,
        *,
        reply_to: str | None = None,
        thread: str | None = None,
    ) -> str:
        text = getattr(message, "text", str(message))
        if not await self._stray(chat_id, "notice", {"text": text}) and self.services.note:
            # No reply is being written (a reminder): kept for the next history load.
            await self.services.note(PREFIX + chat_id, [{"role": "assistant", "content": text}])
        return new_id()

    async def edit(self, chat_id: str, message_id: str, message: Rendered) -> None:
        return None

    async def delete(self, chat_id: str, message_id: str) -> None:
        return None

    def download(self, attachment: Attachment) -> AsyncIterator[bytes]:
        raise BadRequest("web chat uploads are stored on arrival; there is nothing to download")

    async def send_file(
        self,
        chat_id: str,
        path: Path,
        attachment: Attachment,
        *,
        caption: Rendered | None = None,
        reply_to: str | None = None,
        thread: str | None = None,
    ) -> str:
        data = self.describe(attachment) | {"caption": caption.text if caption else ""}
        await self._stray(chat_id, "attachment", data)
        return new_id()

    # -- HTTP ---------------------------------------------------------------------------------

    def http_routes(self) -> Sequence[web.AbstractRouteDef]:
        if self._routes is None:  # made once: the daemon may ask on every request
            from picobot.webui.api import routes

            self._routes = routes(self)
        return self._routes


def _json_object(text: str) -> Any:
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError:
        return text


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    get = getattr(value, "get_secret_value", None)
    text = get() if get is not None else str(value)
    return text or None


def _translate(inbound: InboundMessage, event: ev.RunEvent) -> tuple[str, dict[str, Any]] | None:
    match event:
        case ev.TurnStarted():
            return "turn_started", {"session": inbound.chat_id}
        case ev.TextDelta(text=text):
            return "text_delta", {"text": text}
        case ev.ReasoningDelta(text=text):
            return "reasoning_delta", {"text": text}
        case ev.ToolStarted(call_id=call_id, name=name, arguments=arguments):
            return "tool_started", {"call_id": call_id, "name": name, "arguments": arguments}
        case ev.ToolFinished(call_id=call_id, name=name, result=result, error=error):
            preview = result[:TOOL_RESULT_PREVIEW]
            return "tool_finished", {
                "call_id": call_id,
                "name": name,
                "result": preview,
                "error": error,
            }
        case ev.SteeringInjected(text=text):
            return "steering", {"text": text}
        case ev.TurnFinished(text=text):
            return "turn_finished", {"text": text}
        case ev.TurnAborted(reason=reason):
            return "turn_aborted", {"reason": reason}
        case ev.TurnFailed(message=message):
            return "error", {"message": message}
    return None
