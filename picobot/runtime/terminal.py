"""`picobot chat`: talk to the configured agent in a terminal, the reply streaming in.

With a terminal it prompts; with piped stdin it answers each line in turn and exits 0 at the
end of input, so it can be scripted.
"""

from __future__ import annotations

import asyncio
import sys

from picobot.agent.loop import Agent
from picobot.config import Config
from picobot.core import events as ev

SESSION = "terminal:local"


def chat(config: Config) -> int:
    return asyncio.run(_chat(config))


async def _chat(config: Config) -> int:
    from picobot.runtime.daemon import make_llm

    agent = Agent(make_llm(config), config.agent, data_dir=config.data_dir)
    interactive = sys.stdin.isatty()
    if interactive:
        print("picobot chat — type a message, Ctrl-D to quit.", file=sys.stderr)
    loop = asyncio.get_running_loop()
    try:
        while True:
            if interactive:
                print("you> ", end="", flush=True, file=sys.stderr)
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return 0
            if not line.strip():
                continue
            await _answer(agent, line.strip())
    finally:
        await agent.aclose()
        await agent.llm.aclose()


async def _answer(agent: Agent, text: str) -> None:
    out = sys.stdout
    async for event in agent.run_turn(SESSION, text):
        if isinstance(event, ev.TextDelta):
            out.write(event.text)
            out.flush()
        elif isinstance(event, ev.ToolStarted):
            print(f"\n[tool {event.name}]", file=sys.stderr)
        elif isinstance(event, ev.TurnFailed):
            out.write(event.message)
    out.write("\n")
    out.flush()
