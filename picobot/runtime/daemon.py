"""The daemon: the data path assembled once, then startup, run and shutdown.

    channel ─► Intake ─► inbound topic ─► AgentLoop ─► reply writer
            ─► Outbound (the one door: outbox, per-chat lanes) ─► channel

`ChannelSupervisor` runs the channels; resources open in `startup()` on an `AsyncExitStack`
and close in reverse at the end of `shutdown()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import channels as channel_registry
from picobot.agent.abilities import Abilities, agent_answer
from picobot.agent.llm import LLM
from picobot.agent.loop import Agent, AgentLoop
from picobot.config import Config, load_config, summary
from picobot.core.bus import Topic
from picobot.core.channel import Channel, ReplyWriter, Services, WatchesRuns, WritesReplies
from picobot.core.errors import ConfigError, StorageError
from picobot.core.eventlines import EVENT_LINES
from picobot.core.messages import InboundMessage
from picobot.core.retry import RetryPolicy
from picobot.core.tasks import cancel_and_wait
from picobot.inbound.intake import Intake, policies
from picobot.outbound.door import DispatchSettings, Outbound
from picobot.outbound.ratelimit import local_budget
from picobot.runtime import reload
from picobot.runtime import supervisor as supervisor_module
from picobot.runtime.guard import Access
from picobot.runtime.http import make_app
from picobot.runtime.media import MediaRuntime
from picobot.runtime.server import HttpServer
from picobot.runtime.status import collect_status
from picobot.runtime.supervisor import ChannelSupervisor
from picobot.runtime.writers import Writers, warn_unimplemented
from picobot.storage.datadir import DataDir
from picobot.storage.outbox import FinishedInOutbox, Outbox
from picobot.storage.records import OutboxStore
from picobot.storage.sessions import SessionStore

if TYPE_CHECKING:
    from picobot.runtime.cluster import ClusterNode

log = logging.getLogger("picobot")

STORAGE_CHECK_SECONDS = 2.0  # how often data_dir is checked (deleted? writable again?)
FORCE_CLOSE_SECONDS = 2.0  # each resource a forced exit closes gets this long


def make_llm(config: Config) -> LLM:
    if config.llm.provider == "demo":
        from picobot.agent.demo import DemoLLM

        return DemoLLM(float(os.environ.get("PICOBOT_DEMO_DELAY", "0.03")))  # tests: faster
    try:
        from picobot.agent.openai_llm import OpenAILLM
    except ImportError:
        raise ConfigError("llm.provider", "the openai provider is not available") from None
    return OpenAILLM(config.llm)


class Daemon:
    """One running picobot. `async with Daemon(config) as d: await d.stopped.wait()`.

    Wiring happens here, once; running is the supervisor's, the agent loop's and the outbound
    door's. Resources open in `startup()` on an `AsyncExitStack`; `shutdown()` drains, then
    closes them in reverse.
    """

    def __init__(self, config: Config, llm: LLM | None = None) -> None:
        self.config = config
        self.inbound: Topic[InboundMessage] = Topic("inbound")
        self.data_dir = DataDir(config.data_dir)  # locked at startup; its health for /readyz
        self.outbox = Outbox.in_dir(config.data_dir, on_write=self.data_dir.wrote)
        self.media = MediaRuntime(config)
        # Cluster mode: inbound over Redis streams, shared budgets, history and leases.
        self.cluster: ClusterNode | None = None
        if config.cluster is not None:
            from picobot.runtime.cluster import ClusterNode  # redis: only in cluster mode

            self.cluster = ClusterNode(config.cluster, default_node=str(config.http.port))
        # The replies: in cluster mode shared through Redis, except the web chat's (local).
        self.records: OutboxStore = (
            self.outbox
            if self.cluster is None
            else self.cluster.share_outbox(self.outbox, self._here)
        )
        self.supervisor = ChannelSupervisor(
            self._make_channel,
            on_start=self._attach,
            on_stop=self._detach,
            before_stop=self.cluster.hand_over if self.cluster is not None else None,
            retry_first=supervisor_module.START_RETRY_FIRST,
            retry_max=supervisor_module.START_RETRY_MAX,
        )
        self.channels = self.supervisor.channels
        d = config.dispatch
        self.outbound = Outbound(
            self.channels,
            DispatchSettings(
                retry=RetryPolicy(max_attempts=d.max_attempts, max_backoff=d.max_backoff),
                typing_ttl=d.typing_ttl,
                placeholder_ttl=d.placeholder_ttl,
                budgets=self.cluster.budget if self.cluster is not None else local_budget,
            ),
            outbox=self.records,
            media=self.media.store,
        )
        if self.cluster is not None and self.cluster.delivery is not None:
            self.outbound.delivers = self.cluster.delivery.delivers  # the partitions' owners
            self.cluster.delivery.outbound = self.outbound
        self.media.bind(self.channels)
        self.intake = Intake(
            (
                self.inbound
                if self.cluster is None
                else self.cluster.queue(
                    self._run_here, closed=lambda: self.inbound.closed, here=self._here
                )
            ),
            self.outbound.post,
            policies(config),
            seen=self.outbox.seen if self.cluster is None else self.cluster.seen,
            announce=self.cluster is None,
        )
        # Tools, reminders and MCP servers; they reach the chats only through these callables.
        self.abilities = Abilities(
            config,
            deliver=self.outbound.post,
            run_turn=lambda session, text: agent_answer(self.agent, session, text),
            # Cluster mode: reminders in Redis, looked at often (other nodes add them).
            store=self.cluster.schedules if self.cluster is not None else None,
            poll=self.cluster.schedule_poll if self.cluster is not None else None,
        )
        self.agent = Agent(
            llm or make_llm(config),
            config.agent,
            store=(
                self.cluster.history
                if self.cluster is not None
                else SessionStore.in_dir(config.data_dir, on_write=self.data_dir.wrote)
            ),
            tools=self.abilities.tools,
            reminders=self.abilities.scheduler,
            media=self.media.agent,
        )
        self.media.add_tools(self.agent.tools)
        self._writers = Writers(lambda: self.config, self.channels, self.outbound)
        self.agent_loop = AgentLoop(
            self.agent, self.inbound, self.make_writer, publish=self.outbound.post
        )
        self.stopped = asyncio.Event()
        self.started_at = time.time()
        self._stack = contextlib.AsyncExitStack()
        self._agent_task: asyncio.Task[None] | None = None
        self._reload_lock = asyncio.Lock()
        self.http = HttpServer()

    # -- wiring -----------------------------------------------------------------------------

    def _here(self, channel: str) -> bool:
        """Cluster mode: whether the channel's turns and replies stay on this node (the web
        chat writes to a browser connected here)."""
        return isinstance(self.channels.get(channel), WritesReplies)

    def _make_channel(self, name: str, config: Any) -> Channel | None:
        try:
            cls = channel_registry.load(name)
        except ImportError as exc:
            log.error("channel %s is not available: %s", name, exc)
            return None
        services = Services(
            post=self.outbound.post,
            history=self.agent.history,
            directory=self.agent.store,
            forget=self.agent.reset,
            note=self.agent.store.append_note,
            model=self.agent.model_name,
            files=self.media.store,
        )
        channel = cls(config, self.intake, services)
        if self.cluster is not None:
            self.cluster.prepare(channel)  # e.g. Telegram polls only under the lease
        return channel

    def _attach(self, channel: Channel) -> None:
        if isinstance(channel, WatchesRuns):
            self.agent_loop.add_listener(channel.on_run_event)

    def _detach(self, channel: Channel) -> None:
        if isinstance(channel, WatchesRuns):
            self.agent_loop.remove_listener(channel.on_run_event)

    def make_writer(self, inbound: InboundMessage) -> ReplyWriter:
        """How this turn's reply reaches the chat; the outbox (and in cluster mode the
        inbound stream) hears when the turn is over."""
        writer: ReplyWriter = FinishedInOutbox(self._writers(inbound), inbound.id, self.outbox)
        if self.cluster is not None:
            writer = self.cluster.writer(writer, inbound.id)
        return writer

    # -- startup ----------------------------------------------------------------------------

    async def __aenter__(self) -> Daemon:
        try:
            await self.startup()
        except BaseException:
            await self.shutdown()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    async def startup(self) -> None:
        log.info("starting picobot: %s", summary(self.config))
        stack = self._stack
        self.data_dir.claim()  # a second daemon on the same data_dir stops here
        stack.callback(self.data_dir.release)  # the last thing closed
        if self.cluster is not None:
            stack.push_async_callback(self.cluster.aclose)  # leave the cluster last but one
        stack.push_async_callback(self.agent.llm.aclose)
        stack.push_async_callback(self.media.aclose)  # its HTTP client exists already
        await self.agent.open()  # the session store: a bad data_dir fails here, not mid-chat
        stack.push_async_callback(self.agent.aclose)
        await self.outbox.open()
        stack.push_async_callback(self.outbox.aclose)
        await self.abilities.open()
        stack.push_async_callback(self.abilities.aclose)  # MCP servers (children) stop here
        self.abilities.start_mcp()  # in the background: a slow or broken server blocks nothing
        self.media.start()
        # Create channels (imports only the enabled platforms' libraries).
        for name in self.config.channels.enabled():
            self.supervisor.create(name, getattr(self.config.channels, name))
        warn_unimplemented(self.config, list(self.channels))
        # The HTTP server first: webhooks must be reachable when platforms start sending.
        stack.push_async_callback(self.http.stop)
        await self._start_http()
        stack.push_async_callback(self.supervisor.aclose)  # after the drain: replies still go out
        stack.push_async_callback(self.outbound.aclose)
        self._agent_task = asyncio.create_task(self.agent_loop.run(), name="agent")
        self._agent_task.add_done_callback(self._task_done)
        self.outbound.start_janitor()
        watch = asyncio.create_task(self._watch_storage(), name="storage watch")
        stack.callback(watch.cancel)
        # Turns the previous run never finished: listed before channels start, so messages
        # this run records are not mistaken for them.
        unfinished = await self.outbox.unfinished()
        # One that fails is reported (and in /readyz); a stop requested meanwhile cuts the starts.
        await self.supervisor.start_all(unless=self.stopped)
        # Reminders recorded but not yet advanced when the last run died: not fired again.
        if self.cluster is None:
            await self.abilities.scheduler.reconcile(self.outbox.holds)
        else:  # (in cluster mode, by the node taking the `scheduler` lease, when it does)
            http = f"{self.config.http.host}:{self.port}"
            await self.cluster.start(http, self._run_here)
        await self._recover(unfinished)
        if self.cluster is None:
            self.abilities.start_scheduler()  # after the outbox's leftovers, so order is kept
        else:  # reminders fire on the one node holding the `scheduler` lease
            self.cluster.lead(
                self.cluster.scheduler_lease,
                lambda: self.abilities.lead_scheduler(self.records.holds),  # shared outbox
                self.abilities.stop_scheduler,
            )
        log.info("ready: %s", self.supervisor.summary_line())
        if self.config.channels.web.enabled:
            log.info("web chat: http://%s:%s/", self.config.http.host, self.port)
        else:
            log.info("no web chat enabled; chat in a terminal with `picobot chat`")

    async def _run_here(self, msg: InboundMessage) -> None:
        """Cluster mode: a message whose turn runs on this node: its placeholder, the agent."""
        if msg.channel not in self.channels:
            log.warning("cluster: a %s message, but that channel is not running here", msg.channel)
            return
        await self.intake.announce(msg)
        await self.inbound.publish(msg)

    async def _recover(self, replayed: list[InboundMessage]) -> None:
        """Deliver what a previous run left in the outbox; run turns it never finished."""
        try:
            resumed = await self.outbound.resume(self.outbound.delivers)  # cluster: local only
        except StorageError as exc:  # cluster mode, Redis down: the node catches up later
            log.warning("could not resume pending replies yet: %s", exc)
            resumed = 0
        for msg in replayed:
            if msg.channel in self.channels:
                await self.inbound.publish(msg)
        if resumed or replayed:
            log.info("recovered %d pending replies and %d unfinished turns", resumed, len(replayed))

    async def _watch_storage(self) -> None:
        while True:  # logs a problem once when it appears (see DataDir.problem)
            self.data_dir.problem()
            await asyncio.sleep(STORAGE_CHECK_SECONDS)

    async def _start_http(self) -> None:
        app = make_app(
            self.channels,
            self.status,
            self.supervisor.routes(),
            expected=lambda: self.config.channels.enabled(),
            checks=self.cluster.checks if self.cluster is not None else dict,
            access=Access.of(self.config),  # fixed for this run: a reload cannot widen it
            storage=self.data_dir.problem,
            detail=lambda: {"mcp": self.abilities.mcp.status()},
        )
        await self.http.start(app, self.config.http.host, self.config.http.port)
        log.info("http server on http://%s:%s", self.config.http.host, self.port)

    @property
    def port(self) -> int:
        """The bound port (useful when the config asked for port 0)."""
        return self.http.port or self.config.http.port

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s crashed", task.get_name(), exc_info=task.exception())
            self.stopped.set()

    async def status(self) -> dict[str, object]:
        """What `GET /api/status` shows (see `picobot.runtime.status`)."""
        return await collect_status(self)

    def summary_line(self) -> str:
        """One line for systemd's STATUS=, e.g. "telegram=connected, web=connected"."""
        return self.supervisor.summary_line()

    # -- reload -----------------------------------------------------------------------------

    async def reload(self, new: Config) -> list[str]:
        """Apply `new` without a restart where possible (see `picobot.runtime.reload.apply`)."""
        async with self._reload_lock:
            old = self.config
            applied, self.config = await reload.apply(old, new, self.supervisor, self.intake)
            if old.mcp != new.mcp:  # MCP servers whose config changed are restarted
                applied += await self.abilities.reload(new)
            return applied

    async def reload_file(self, path: str | Path) -> bool:
        """Read `path` and `reload()` it; an invalid file is refused with one log line."""
        try:
            new = load_config(path, empty_ok=False)
            reload.check(self.config, new)  # never widens access, never half-applies
        except ConfigError as exc:
            log.error("reload rejected, keeping the running config: %s", exc)
            return False
        applied = await self.reload(new)
        log.info("reloaded %s: %s", path, "; ".join(applied) or "no channel changes")
        return True

    # -- shutdown ---------------------------------------------------------------------------

    async def force_close(self) -> None:
        """A forced exit: no draining; child processes end, databases close (what they hold
        stays recoverable: every write was committed when it returned). Running turns are cut
        first, so they record that they were interrupted while the outbox is still open."""
        for close in (
            lambda: self.agent_loop.drain(0),
            self.abilities.aclose,
            self.agent.store.aclose,
            self.outbox.aclose,
        ):
            try:
                async with asyncio.timeout(FORCE_CLOSE_SECONDS):
                    await close()
            except Exception as exc:  # keep closing the rest
                log.warning("forced exit: %s", exc)

    async def shutdown(self) -> None:
        """Stop intake, finish turns and deliveries within `dispatch.drain_timeout`, close."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.dispatch.drain_timeout
        # Stop intake: channels stop fetching, new inbound messages are refused from now on.
        # In cluster mode the platform leases are handed over after the last poll returned.
        if self.cluster is not None:
            await self.cluster.stop_intake()
        await self.supervisor.stop_intake()
        self.inbound.close()
        if self.cluster is not None:
            await self.cluster.stop_leading()  # the scheduler lease moves on at once
        await self.abilities.stop_scheduler()  # nothing new fires; a cut entry fires next run
        # Let running turns finish, within the drain timeout.
        await self.agent_loop.drain(self.config.dispatch.drain_timeout)
        # Deliver what the turns produced, with what is left of the timeout.
        if not await self.outbound.drain(max(0.0, deadline - loop.time())):
            log.warning("drain timeout: some outbound messages were not delivered")
        # Cancel what is left: the agent loop, then lanes (turns waiting on them end now).
        if self._agent_task is not None:
            await cancel_and_wait(self._agent_task)
        await self.outbound.aclose()
        await self.agent_loop.drain(0)
        # Close channels, the HTTP server, the stores and the model client, in reverse.
        await self._stack.aclose()
        EVENT_LINES.report()  # event lines left out since the last report, if any
        log.info("stopped")
