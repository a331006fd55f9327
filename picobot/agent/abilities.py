"""The agent's tools with their dependencies: built-ins, the scheduler, MCP servers.

The daemon builds one `Abilities` and wires it through two narrow callables, so nothing here
knows the dispatcher or the agent loop:

    deliver(msg)              the outbound door: records `msg` in the outbox, then queues it
    run_turn(session, text)   runs one agent turn in `session`; returns the reply

Lifecycle: `open()` (the schedule database), `start_mcp()` (returns at once; servers connect
in the background), `start_scheduler()` (after the outbox was resumed), `stop_scheduler()`
(first on shutdown: nothing new fires), `aclose()` (last: MCP children stopped, store closed).
In cluster mode the store is Redis's and `lead_scheduler()` starts the firing on the one node
holding the `scheduler` lease.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from picobot.agent.fetch import fetch_tool
from picobot.agent.mcp import McpManager
from picobot.agent.schedule import Deliver, EntryStore, RunTurn, Scheduler, ScheduleStore
from picobot.agent.schedule.scheduler import MAX_WAIT
from picobot.agent.schedule.tool import schedule_tool
from picobot.agent.tools import ToolRegistry, message_tool, time_tool
from picobot.config import Config
from picobot.core import events as ev
from picobot.core.tasks import cancel_and_wait

if TYPE_CHECKING:
    from picobot.agent.turns import Agent

log = logging.getLogger("picobot")


def build_tools(config: Config, scheduler: Scheduler | None = None) -> ToolRegistry:
    """The tools `agent.tools` names, in that order (MCP tools are added as servers connect).

    :raises ConfigError: naming `agent.tools` if a name is unknown (as `picobot check` does).
    """
    available = ToolRegistry(
        [
            time_tool(),
            message_tool(),
            schedule_tool(scheduler),
            fetch_tool(config.fetch.allow_private),
        ]
    )
    return available.select(config.agent.tools)


async def agent_answer(agent: Agent, session: str, text: str) -> str:
    """Run one turn for a scheduled entry; its reply.

    :raises RuntimeError: if the turn failed or was aborted (the entry is retried later).
    """
    reply = ""
    async for event in agent.run_turn(session, text):
        if isinstance(event, ev.TurnFinished):
            reply = event.text
        elif isinstance(event, ev.TurnFailed | ev.TurnAborted):
            raise RuntimeError(f"the turn did not finish: {type(event).__name__}")
    return reply


class Abilities:
    """Tools, scheduler and MCP servers of one daemon."""

    def __init__(
        self,
        config: Config,
        deliver: Deliver,
        run_turn: RunTurn,
        *,
        store: EntryStore | None = None,
        poll: float | None = None,
    ) -> None:
        self.config = config
        self.store: EntryStore = (
            store if store is not None else ScheduleStore.in_dir(config.data_dir)
        )
        zone = ZoneInfo(config.agent.timezone) if config.agent.timezone else None
        self.scheduler = Scheduler(
            self.store,
            deliver,
            run_turn,
            tz=zone,
            grace=config.schedule.grace,
            max_per_chat=config.schedule.max_per_chat,
            poll=poll or MAX_WAIT,
        )
        self.tools = build_tools(config, self.scheduler)
        self.mcp = McpManager(config.mcp.servers, self.tools)
        self._scheduler_task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self.store.open()

    def start_mcp(self) -> None:
        self.mcp.start()

    def start_scheduler(self) -> None:
        if self._scheduler_task is not None and not self._scheduler_task.done():
            return
        self._scheduler_task = asyncio.create_task(self.scheduler.run(), name="scheduler")
        self._scheduler_task.add_done_callback(_report_crash)

    async def lead_scheduler(self, recorded: Callable[[str], Awaitable[bool]]) -> None:
        """Cluster mode, on taking the `scheduler` lease: advance the entries whose firing
        the outbox already holds (`recorded`), then fire. Never raises."""
        try:
            await self.scheduler.reconcile(recorded)
        except Exception as exc:  # Redis went away: the loop retries, the lease may go
            log.warning("schedule: could not check the outbox for fired entries (%s)", exc)
        self.start_scheduler()

    async def stop_scheduler(self) -> None:
        task, self._scheduler_task = self._scheduler_task, None
        if task is not None:
            await cancel_and_wait(task)

    async def aclose(self) -> None:
        await self.stop_scheduler()
        await self.mcp.aclose()
        await self.store.aclose()

    async def reload(self, new: Config) -> list[str]:
        """Apply a changed `mcp` section (servers restarted); other sections need a restart."""
        self.config = new
        return await self.mcp.reload(new.mcp.servers)

    async def status(self) -> dict[str, Any]:
        try:
            entries: int | None = await self.store.count()
        except Exception:  # Redis unreachable: the cluster object says so
            entries = None
        return {
            "mcp": self.mcp.status(),
            "schedule": {"entries": entries, **self.scheduler.statistics()},
        }


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the scheduler crashed", exc_info=task.exception())
