"""Slash commands, handled before the LLM. Unknown ``/x`` is not a command: the model gets it."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from picobot.core.eventlines import EVENT_LINES

if TYPE_CHECKING:
    from picobot.core.messages import InboundMessage

log = logging.getLogger("picobot.agent")

# Telegram sends `/cmd@botname` in groups; the suffix is dropped.
_COMMAND = re.compile(r"^/([A-Za-z0-9_]+)(?:@[A-Za-z0-9_]+)?(?:\s+(.*))?$", re.DOTALL)

# name -> canonical name
COMMANDS = {
    "help": "help",
    "start": "help",  # Telegram's first contact
    "new": "new",
    "reset": "new",
    "stop": "stop",
    "status": "status",
    "reminders": "reminders",
    "cancel": "cancel",
}

HELP = (
    "Commands:\n"
    "/new — start a new conversation (also /reset)\n"
    "/stop — stop the current answer and drop waiting messages\n"
    "/status — model, tools, conversation length, waiting messages\n"
    "/reminders — this chat's reminders and scheduled messages\n"
    "/cancel ID — cancel one of them\n"
    "/help — this list\n\n"
    "Messages sent while I am answering are added to the current answer."
)


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # canonical: a value of COMMANDS
    args: str = ""


def parse_command(text: str) -> Command | None:
    """The command in `text`, or None if it is not one of ours (then it goes to the model)."""
    match = _COMMAND.match(text.strip())
    if match is None:
        return None
    name = COMMANDS.get(match.group(1).lower())
    if name is None:
        return None
    return Command(name, (match.group(2) or "").strip())


class Reminders(Protocol):
    """What `/reminders` and `/cancel ID` need (the scheduler); `chat` is "channel:chat_id"."""

    async def reminders_text(self, chat: str) -> str: ...

    async def cancel_text(self, chat: str, arg: str) -> str: ...


class Commandable(Protocol):
    """What the commands need of the agent."""

    @property
    def reminders(self) -> Reminders | None: ...

    def tool_names(self) -> list[str]: ...

    @property
    def model_name(self) -> str: ...

    @property
    def history_limit(self) -> int: ...

    async def stop(self, session: str, *, reason: str = ...) -> bool: ...

    async def reset(self, session: str) -> None: ...

    async def count(self, session: str) -> int: ...

    def queued(self, session: str) -> int: ...

    def is_running(self, session: str) -> bool: ...


async def run_command(
    agent: Commandable, session: str, command: Command, inbound: InboundMessage | None = None
) -> str:
    """Run a slash command in `session`; returns the reply for the user."""
    if command.name in ("reminders", "cancel"):
        reminders = agent.reminders
        if reminders is None:
            return "Reminders are not available here."
        chat = f"{inbound.channel}:{inbound.chat_id}" if inbound is not None else session
        if command.name == "reminders":
            return await reminders.reminders_text(chat)
        return await reminders.cancel_text(chat, command.args)
    if command.name == "stop":
        stopped = await agent.stop(session)
        if EVENT_LINES.take(log):
            log.info("/stop in %s: %s", session, "stopped" if stopped else "nothing to stop")
        return "Stopped." if stopped else "Nothing to stop."
    if EVENT_LINES.take(log):
        log.info("/%s in %s", command.name, session)
    if command.name == "new":
        await agent.reset(session)
        return "New conversation started."
    if command.name == "status":
        count = await agent.count(session)
        return (
            f"Model: {agent.model_name}\n"
            f"Tools: {', '.join(agent.tool_names()) or 'none'}\n"
            f"Conversation: {count} messages (keeps the last {agent.history_limit})\n"
            f"Waiting messages: {agent.queued(session)}\n"
            f"State: {'answering' if agent.is_running(session) else 'idle'}"
        )
    return HELP
