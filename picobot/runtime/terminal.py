"""`picobot chat`: talk to the configured agent in a terminal, the reply streaming in.

In a terminal: a prompt with line editing and history (prompt_toolkit), replies rendered as
Markdown (rich). Ctrl-C during a reply stops the reply; at the prompt it exits at once (130);
Ctrl-D exits (0). The conversation continues across runs (`--session NAME` picks another).

Piped (`echo hi | picobot chat`): each line is answered in turn, the reply as plain Markdown;
every run is a fresh conversation unless `--session NAME` is given. The exit status is 1 if
the model failed on any line, else 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any, TextIO, cast

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory
from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown

from picobot.agent.abilities import build_tools
from picobot.agent.loop import Agent
from picobot.config import Config
from picobot.core import events as ev
from picobot.core.messages import new_id

INTERACTIVE_SESSION = "local"  # the conversation a terminal continues by default
PROMPT = "you> "
EXIT_FAILED = 1  # the model failed on some message
EXIT_INTERRUPTED = 130  # Ctrl-C at the prompt, as shells report SIGINT

Turn = Callable[[str], AsyncGenerator[ev.RunEvent, None]]


def session_key(name: str | None, interactive: bool) -> str:
    """The agent session: `--session NAME`, else the terminal's own, else a fresh one."""
    if name:
        return f"terminal:{name}"
    return f"terminal:{INTERACTIVE_SESSION if interactive else new_id()}"


def chat(config: Config, session: str | None = None) -> int:
    """Run `picobot chat`; returns the exit status."""
    try:
        return asyncio.run(_chat(config, session))
    except KeyboardInterrupt:  # Ctrl-C while starting or closing: leave quietly
        print(file=sys.stderr)
        return EXIT_INTERRUPTED


async def _chat(config: Config, session: str | None) -> int:
    from picobot.runtime.daemon import make_llm

    interactive = sys.stdin.isatty()
    key = session_key(session, interactive)
    # Reminders need the daemon: here the `schedule` tool refuses, saying so.
    tools = build_tools(config)
    agent = Agent(make_llm(config), config.agent, data_dir=config.data_dir, tools=tools)
    try:
        await agent.open()

        def turn(text: str) -> AsyncGenerator[ev.RunEvent, None]:
            # An async generator: closing it aborts the turn (see `Agent.run_turn`).
            return cast(AsyncGenerator[ev.RunEvent, None], agent.run_turn(key, text))

        if interactive:
            history = FileHistory(str(config.data_dir / "chat_history"))
            return await _interactive(turn, PromptSession(history=history), Console())
        return await _piped(turn, sys.stdin, sys.stdout)
    finally:
        await agent.aclose()
        await agent.llm.aclose()


async def _interactive(turn: Turn, prompt: PromptSession[str], console: Console) -> int:
    console.print("[dim]picobot chat — Ctrl-C stops a reply, Ctrl-D quits.[/dim]")
    failed = False
    while True:
        try:
            text = await prompt.prompt_async(PROMPT)
        except EOFError:  # Ctrl-D: end the line, so the shell prompt starts on its own
            console.print()
            return EXIT_FAILED if failed else 0
        except KeyboardInterrupt:  # Ctrl-C at the prompt: leave at once
            return EXIT_INTERRUPTED
        if text.strip():
            ok = await _stoppable(_render(turn(text.strip()), console))
            failed = failed or not ok


async def _stoppable(reply: Coroutine[Any, Any, bool]) -> bool:
    """Run one reply; Ctrl-C (SIGINT) during it stops the reply, not the program.
    True unless the model failed."""
    current = asyncio.current_task()
    task = asyncio.create_task(reply)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        if current is not None and current.cancelling():
            raise  # not Ctrl-C: we are being cancelled ourselves
        return True
    finally:
        loop.remove_signal_handler(signal.SIGINT)


async def _render(events: AsyncGenerator[ev.RunEvent, None], console: Console) -> bool:
    """Show one reply as Markdown, live while it streams; False if the model failed."""
    text, ok, note = "", True, ""
    # transient: the live view (cut at the screen's height) is replaced by the whole reply.
    live = Live(Markdown(""), console=console, auto_refresh=False, transient=True)
    try:
        with live:
            async for event in events:
                if isinstance(event, ev.TextDelta):
                    text += event.text
                    live.update(Markdown(text), refresh=True)
                elif isinstance(event, ev.ToolStarted):
                    live.console.print(f"[dim]🔧 {event.name} …[/dim]")
                elif isinstance(event, ev.ToolFinished):
                    mark = "[red]✗[/red]" if event.error else "[green]✓[/green]"
                    live.console.print(f"[dim]{mark} {event.name}[/dim]")
                elif isinstance(event, ev.TurnFailed):
                    ok = False
                    detail = f"\n({event.detail})" if event.detail else ""
                    note = f"[red]{event.message}[/red][dim]{detail}[/dim]"
                elif isinstance(event, ev.TurnAborted):
                    note = f"[yellow]({event.reason})[/yellow]"
    except asyncio.CancelledError:
        note = "[yellow](stopped)[/yellow]"
        raise
    finally:
        await events.aclose()  # stops the turn if it is still running
        if text.strip():
            console.print(Markdown(text))
        if note:
            console.print(note, highlight=False)
    return ok


async def _piped(turn: Turn, stdin: TextIO, out: TextIO) -> int:
    loop = asyncio.get_running_loop()
    failed = False
    while True:
        line = await loop.run_in_executor(None, stdin.readline)
        if not line:
            return EXIT_FAILED if failed else 0
        if not line.strip():
            continue
        async for event in turn(line.strip()):
            if isinstance(event, ev.TextDelta):
                out.write(event.text)
                out.flush()
            elif isinstance(event, ev.ToolStarted):
                print(f"[tool {event.name}]", file=sys.stderr)
            elif isinstance(event, ev.TurnFailed):
                failed = True
                out.write(event.message)
                detail = f" ({event.detail})" if event.detail else ""
                print(f"picobot: the model failed{detail}", file=sys.stderr)
        out.write("\n")
        out.flush()
