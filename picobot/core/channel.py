"""The contract between a platform adapter and picobot's core.

An adapter translates, nothing else: platform events become `InboundMessage`s handed to the
sink the core gives it; `send`/`edit`/`delete`/`typing` perform one platform call each and
translate the SDK's exceptions into `picobot.core.errors` (each adapter's `<platform>_errors.py`).
Splitting, rendering, rate limits, retries, placeholders and access control live in the core,
driven by the `Capabilities` the adapter declares.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from picobot.core.events import RunEvent
from picobot.core.messages import Attachment, AttachmentKind, InboundMessage, Post
from picobot.core.values import value

if TYPE_CHECKING:
    from aiohttp import web

InboundSink = Callable[[InboundMessage], Awaitable[None]]

Format = Literal["telegram_html", "discord", "slack_mrkdwn", "plain", "markdown"]


@value(frozen=True, slots=True)
class Rendered:
    """A message ready to send."""

    text: str  # what is sent to the platform
    parse_mode: str | None  # "HTML" for Telegram, None otherwise
    visible: str  # the text a user sees (markup removed); Telegram's limit counts this


@dataclass(frozen=True, slots=True)
class Rate:
    """`per_second` sustained, with bursts of up to `burst` calls (a leaky bucket: at most
    ``burst + per_second * t`` calls in any t seconds). With `window`, at most `burst` calls in
    any ``burst / per_second`` seconds: a platform that counts per window allows a whole
    window's worth at once, where a bucket would let too many through right after a burst."""

    per_second: float
    burst: int = 1
    window: bool = False

    @classmethod
    def per_minute(cls, count: float, burst: int = 1) -> Rate:
        return cls(count / 60.0, burst)

    @classmethod
    def per_window(cls, count: int, seconds: float) -> Rate:
        """At most `count` calls in any `seconds`."""
        return cls(count / seconds, count, window=True)


@dataclass(frozen=True, slots=True)
class RateBudget:
    """How fast the core may call the platform. `None` means no limit at that level."""

    overall: Rate | None = None  # all chats together
    per_chat: Rate | None = None
    per_group: Rate | None = None  # extra budget for group chats
    edits_overall: Rate | None = None  # e.g. Slack chat.update, Tier 3
    edits_per_chat: Rate | None = None  # e.g. Discord; None: edits share `per_chat`


UNLIMITED = RateBudget()


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a channel can do; the core discovers behaviour from this, not from the class."""

    max_length: int
    length_unit: Literal["codepoints", "utf16"] = "codepoints"
    format: Format = "plain"
    measure_visible: bool = False  # Telegram counts visible text after entity parsing
    can_edit: bool = False
    can_delete: bool = False
    can_type: bool = False
    typing_interval: float = 4.0  # refresh period of the typing indicator
    native_streaming: bool = False
    flush_interval: float = 1.0  # default streaming flush interval
    rate: RateBudget = UNLIMITED
    # Files (channels that are `FileTransfer`s): the largest upload, in bytes; images may
    # have a lower limit; `max_caption` is the text that can go with a file (0: none, the
    # text is sent after it).
    max_upload: int = 0
    max_image_upload: int | None = None
    max_caption: int = 0

    def upload_limit(self, attachment: Attachment) -> int:
        if attachment.kind is AttachmentKind.IMAGE and self.max_image_upload is not None:
            return min(self.max_image_upload, self.max_upload)
        return self.max_upload


class State(enum.StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"  # lost the platform; the library is reconnecting
    FAILED = "failed"


History = Callable[[str], Awaitable[list[dict[str, Any]]]]  # session key -> conversation
Forget = Callable[[str], Awaitable[None]]  # session key: stop its turn, delete its history
# session key, messages: kept in its history for the user to see (never shown to the model)
Note = Callable[[str, Sequence[dict[str, Any]]], Awaitable[None]]


class FileStore(Protocol):
    """The media store, as channels see it: `max_bytes` is the core's limit per file (a
    platform offering several sizes of a photo gets the largest within it); the web chat
    stores uploads on arrival (`put`) and serves them by id (`path`)."""

    max_bytes: int

    async def put(
        self,
        chunks: AsyncIterable[bytes],
        *,
        name: str | None = None,
        kind: AttachmentKind | None = None,
        size: int | None = None,
        max_bytes: int | None = None,
    ) -> Attachment: ...

    def path(self, media_id: str) -> Path: ...


class SessionSummary(Protocol):
    """One conversation in a list (`picobot.storage.sessions.SessionInfo`)."""

    @property
    def key(self) -> str: ...
    @property
    def title(self) -> str | None: ...
    @property
    def created(self) -> float: ...
    @property
    def updated(self) -> float: ...


class Directory(Protocol):
    """The stored conversations, for a conversation list (the session store)."""

    async def sessions(self, prefix: str = "", *, limit: int = 200) -> Sequence[SessionSummary]:
        """Sessions whose key starts with `prefix`, most recently active first."""
        ...

    async def rename(self, session: str, title: str) -> bool:
        """False if there is no such session."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Services:
    """What the core offers a channel beyond its inbound sink; each may be absent (tests)."""

    post: Post | None = None  # the outbound door
    history: History | None = None  # a session's conversation, as the user saw it
    files: FileStore | None = None  # the media store
    directory: Directory | None = None  # the stored conversations (list, rename)
    forget: Forget | None = None  # delete a conversation (its running turn stops first)
    note: Note | None = None  # keep a message in a conversation's history (see `Note`)
    model: str = ""  # the name of the model that answers


NO_SERVICES = Services()


class Channel(ABC):
    """One platform. Subclasses set `name` and `capabilities` and implement the calls.

    Lifecycle: ``start()`` connects and begins handing inbound messages to the sink; ``stop()``
    stops intake and closes the connection. Both are awaited by the daemon in that order.
    """

    name: ClassVar[str]
    capabilities: Capabilities

    def __init__(self, config: Any, sink: InboundSink, services: Services = NO_SERVICES) -> None:
        self.config = config
        self.sink = sink
        self.services = services
        self.state = State.STOPPED
        self.state_detail = ""

    @property
    def connected(self) -> bool:
        return self.state is State.CONNECTED

    def set_state(self, state: State, detail: str = "") -> None:
        self.state, self.state_detail = state, detail

    @abstractmethod
    async def start(self) -> None:
        """Connect to the platform and start intake."""

    async def stop_intake(self) -> None:
        """Stop taking new platform events (first step of shutdown); sending still works.

        Channels whose platform acks before we handle an event (Telegram polling) must stop
        fetching here, or events arriving during the drain are lost. Default: nothing to do.
        """
        return None

    @abstractmethod
    async def stop(self) -> None:
        """Stop intake and close the connection. Must be safe to call after a failed start."""

    @abstractmethod
    async def send(
        self,
        chat_id: str,
        message: Rendered,
        *,
        reply_to: str | None = None,
        thread: str | None = None,
    ) -> str:
        """Send one message (already within the limit); return the platform's message id.

        :raises picobot.core.errors.ChannelError: translated from the SDK's exception.
        """

    async def edit(self, chat_id: str, message_id: str, message: Rendered) -> None:
        """Replace a message's text. "Not modified" is success, not an error."""
        raise NotImplementedError(f"{self.name} cannot edit messages")

    async def draft(
        self, chat_id: str, draft_id: int, message: Rendered, thread: str | None = None
    ) -> None:
        """Show `message` as a native streaming preview (`Capabilities.native_streaming`).

        The preview is ephemeral: a stream always ends with a real message.
        """
        raise NotImplementedError(f"{self.name} has no native streaming")

    async def delete(self, chat_id: str, message_id: str) -> None:
        raise NotImplementedError(f"{self.name} cannot delete messages")

    async def typing(self, chat_id: str, thread: str | None = None) -> None:
        """Show the typing indicator once; the core refreshes it every `typing_interval`."""
        return None


# -- optional abilities, declared: the runtime finds them with isinstance, never by name ------


class ReplyWriter(Protocol):
    """Turns one turn's run events into what the chat shows (streamed, in pieces or whole).

    `finish()` is called exactly once, after the last event.

    Both raise `StorageError` when a durable message of the turn (a reply) could not be
    recorded in the outbox (`Superseded`: cluster mode, the turn outlived its partition):
    the turn is then not finished and runs again (`FinishedInOutbox`, `AckedInStreams`).
    A writer must let that error through; it may swallow `ChannelError`s (delivery).
    """

    async def feed(self, event: RunEvent) -> None: ...

    async def finish(self) -> None: ...


class WritesReplies(ABC):
    """A channel that shows replies itself (the web chat streams run events over SSE)."""

    @abstractmethod
    def make_writer(self, inbound: InboundMessage) -> ReplyWriter:
        """The writer for the turn answering `inbound`."""


class WatchesRuns(ABC):
    """A channel that wants every run event of its own conversations (the web chat)."""

    @abstractmethod
    def on_run_event(self, inbound: InboundMessage, event: RunEvent) -> None:
        """Called for each event; must not block or raise."""


class ServesHttp(ABC):
    """A channel with routes on picobot's shared HTTP server (webhooks, the web chat)."""

    @abstractmethod
    def http_routes(self) -> Sequence[web.AbstractRouteDef]:
        """The routes to mount; asked once at startup (the paths are fixed from then on)."""


class GuardsHttp(ABC):
    """A channel that checks every request to the shared server (the core guard, with the web
    token, Host and Origin checks, runs first: see `picobot.runtime.guard`)."""

    @abstractmethod
    def http_guard(self, request: web.Request) -> web.StreamResponse | None:
        """A response to refuse the request, or None to let it through."""


class FileTransfer(ABC):
    """A channel that carries files.

    `download` streams an inbound attachment's bytes (from its `source`); the core decides how
    much to take (it closes the stream at the size limit). `send_file` uploads one stored file,
    already checked against `capabilities.upload_limit`.
    """

    @abstractmethod
    def download(self, attachment: Attachment) -> AsyncIterator[bytes]:
        """The bytes of `attachment`, in chunks.

        :raises picobot.core.errors.ChannelError: the platform refused or lost the download.
        """

    @abstractmethod
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
        """Upload the file at `path`, with `caption`; the platform's message (or file) id.

        :raises picobot.core.errors.ChannelError: translated from the SDK's exception.
        """


class HoldsConnection(ABC):
    """A channel whose intake is one platform connection per bot (Telegram long polling: a
    second poller gets 409 Conflict; the Discord gateway; Slack Socket Mode). In cluster mode
    only the node holding the channel's lease runs that intake; every node connects for sending
    (and is `connected` then: it can deliver any reply).

    Lifecycle: `defer_intake()` before `start()` makes `start()` connect without intake;
    `open_intake()` starts it, `close_intake(finish_poll=...)` stops it (again and again).
    """

    @property
    @abstractmethod
    def exclusive_intake(self) -> bool:
        """True when this channel's intake must run on one node only (False for webhooks)."""

    @abstractmethod
    def defer_intake(self, poll_timeout: float) -> None:
        """Let `start()` connect for sending only; long polls wait at most `poll_timeout` s."""

    @abstractmethod
    async def open_intake(self) -> None:
        """Start taking platform events (this node holds the lease now)."""

    @abstractmethod
    async def close_intake(self, *, finish_poll: bool) -> None:
        """Stop taking events. `finish_poll`: wait for the request in flight to return (a
        hand-over: the next holder must not poll while it runs) instead of cancelling it."""
