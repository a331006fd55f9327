"""An in-process channel for core tests: records every call, fails on demand."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from picobot.core.channel import Capabilities, Channel, InboundSink, RateBudget, Rendered
from picobot.core.messages import InboundMessage, Sender

EDITABLE = Capabilities(
    max_length=100,
    format="markdown",
    can_edit=True,
    can_delete=True,
    can_type=True,
    typing_interval=0.05,
)


@dataclass
class Sent:
    chat_id: str
    message_id: str
    text: str
    parse_mode: str | None
    reply_to: str | None = None
    thread: str | None = None
    history: list[str] = field(default_factory=list)
    deleted: bool = False


class MemoryChannel(Channel):
    """Messages live in `messages` (id -> Sent); `calls` lists (op, chat_id, text)."""

    name = "memory"

    def __init__(
        self,
        sink: InboundSink | None = None,
        capabilities: Capabilities = EDITABLE,
        name: str = "memory",
    ) -> None:
        super().__init__(None, sink or _no_sink)
        self.name = name  # type: ignore[misc]
        self.capabilities = capabilities
        self.messages: dict[str, Sent] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.typing_calls: list[str] = []
        self.failures: list[tuple[str, str | None, Exception]] = []  # (op, chat or None, exc)
        self.hold: dict[str, asyncio.Event] = {}  # chat_id -> event that must be set to proceed
        self.gated = asyncio.Event()
        self._ids = itertools.count(1)
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def fail(self, op: str, exc: Exception, chat_id: str | None = None, times: int = 1) -> None:
        """Make the next `times` calls of `op` ("send", "edit", "delete") raise `exc`."""
        self.failures += [(op, chat_id, exc)] * times

    def _maybe_fail(self, op: str, chat_id: str) -> None:
        for i, (f_op, f_chat, exc) in enumerate(self.failures):
            if f_op == op and f_chat in (None, chat_id):
                del self.failures[i]
                self.calls.append((f"{op} failed", chat_id, type(exc).__name__))
                self._notify()
                raise exc

    async def _gate(self, chat_id: str) -> None:
        if chat_id in self.hold:
            self.gated.set()  # a call is now in flight, waiting for the test
            await self.hold[chat_id].wait()

    def _record(self, op: str, chat_id: str, text: str) -> None:
        self.calls.append((op, chat_id, text))
        self._notify()

    def _notify(self) -> None:
        for predicate, future in list(self._waiters):
            if not future.done() and predicate():
                future.set_result(None)

    async def send(
        self,
        chat_id: str,
        message: Rendered,
        *,
        reply_to: str | None = None,
        thread: str | None = None,
    ) -> str:
        await self._gate(chat_id)
        self._maybe_fail("send", chat_id)
        message_id = str(next(self._ids))
        self.messages[message_id] = Sent(
            chat_id, message_id, message.text, message.parse_mode, reply_to, thread
        )
        self._record("send", chat_id, message.text)
        return message_id

    async def edit(self, chat_id: str, message_id: str, message: Rendered) -> None:
        await self._gate(chat_id)
        self._maybe_fail("edit", chat_id)
        sent = self.messages[message_id]
        sent.history.append(sent.text)
        sent.text, sent.parse_mode = message.text, message.parse_mode
        self._record("edit", chat_id, message.text)

    async def delete(self, chat_id: str, message_id: str) -> None:
        self._maybe_fail("delete", chat_id)
        self.messages[message_id].deleted = True
        self._record("delete", chat_id, "")

    async def typing(self, chat_id: str, thread: str | None = None) -> None:
        self.typing_calls.append(chat_id)

    def visible(self, chat_id: str) -> list[str]:
        """The texts a user of `chat_id` sees now, in order."""
        return [m.text for m in self.messages.values() if m.chat_id == chat_id and not m.deleted]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        if predicate():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((predicate, future))
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            raise AssertionError(f"condition not met; calls so far: {self.calls}") from None
        finally:
            self._waiters.remove((predicate, future))

    def inbound(self, chat_id: str, text: str, **kwargs: object) -> InboundMessage:
        sender = kwargs.pop("sender", Sender("u1", "alice"))
        return InboundMessage(self.name, chat_id, sender, text, **kwargs)  # type: ignore[arg-type]


async def _no_sink(msg: InboundMessage) -> None:
    return None


UNLIMITED = RateBudget()
