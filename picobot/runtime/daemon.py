"""The daemon: startup, main loop, shutdown — the data path assembled once.

    channel ─► Intake ─► bus.inbound ─► AgentLoop ─► reply writer
            ─► bus.outbound ─► Dispatcher (lanes) ─► channel

Resources open in dependency order in `startup()` and close in reverse in `shutdown()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

import channels as channel_registry
from picobot.agent.llm import LLM
from picobot.agent.loop import Agent, AgentLoop, BufferedReply, ReplyWriter
from picobot.config import Config, load_config, summary
from picobot.core import metrics
from picobot.core.bus import Bus
from picobot.core.channel import Channel, State
from picobot.core.errors import ConfigError, TransientError
from picobot.core.messages import InboundMessage
from picobot.core.retry import RetryPolicy
from picobot.inbound.intake import Intake, policies
from picobot.outbound.dispatch import Dispatcher, DispatchSettings
from picobot.outbound.streaming import PieceReply, StreamingReply
from picobot.runtime import reload
from picobot.runtime.forced import exit_soon
from picobot.runtime.guard import Access
from picobot.runtime.http import make_app
from picobot.runtime.sdnotify import Notifier
from picobot.runtime.server import (
    HEADER_TIMEOUT,
    ConnectionLimit,
    LimitedSite,
    connection_cap,
    quiet_accept_errors,
    quiet_client_errors,
    raise_fd_limit,
)
from picobot.storage.datadir import DataDir
from picobot.storage.outbox import FinishedInOutbox, Outbox
from picobot.storage.sessions import SessionStore

log = logging.getLogger("picobot")

START_RETRY_FIRST = 2.0  # seconds before the first retry of a channel that could not start
START_RETRY_MAX = 60.0
STORAGE_CHECK_SECONDS = 2.0  # how often data_dir is checked (deleted? writable again?)


# Keys the intake applies; a change to only these needs no channel restart on reload.
def make_llm(config: Config) -> LLM:
    if config.llm.provider == "demo":
        from picobot.agent.demo import DemoLLM

        return DemoLLM(float(os.environ.get("PICOBOT_DEMO_DELAY", "0.03")))  # tests: faster
    try:
        from picobot.agent.openai_llm import OpenAILLM  # type: ignore[import-not-found]
    except ImportError:
        raise ConfigError("llm.provider", "the openai provider is not available") from None
    return OpenAILLM(config.llm)


class Daemon:
    """One running picobot. `async with Daemon(config) as d: await d.stopped.wait()`."""

    def __init__(self, config: Config, llm: LLM | None = None) -> None:
        self.config = config
        self.bus = Bus()
        self.channels: dict[str, Channel] = {}
        self.data_dir = DataDir(config.data_dir)  # locked at startup; its health for /readyz
        self.outbox = Outbox.in_dir(config.data_dir, on_write=self.data_dir.wrote)
        d = config.dispatch
        self.dispatcher = Dispatcher(
            self.channels,
            DispatchSettings(
                retry=RetryPolicy(max_attempts=d.max_attempts, max_backoff=d.max_backoff),
                typing_ttl=d.typing_ttl,
                placeholder_ttl=d.placeholder_ttl,
            ),
            outbox=self.outbox,
        )
        # Kept, and updated in place on reload, so the intake sees new policies at once.
        self._policies = policies(config)
        self.intake = Intake(
            self.bus.inbound, self.dispatcher.submit, self._policies, seen=self.outbox.seen
        )
        store = SessionStore.in_dir(config.data_dir, on_write=self.data_dir.wrote)
        self.agent = Agent(llm or make_llm(config), config.agent, store=store)
        self.agent_loop = AgentLoop(
            self.agent, self.bus.inbound, self.make_writer, publish=self.bus.outbound.publish
        )
        self.stopped = asyncio.Event()
        self.started_at = time.time()
        self._tasks: list[asyncio.Task[Any]] = []
        self._runner: web.AppRunner | None = None
        self._reload_lock = asyncio.Lock()
        self._mounted: set[tuple[str, str, str]] = set()  # (channel, method, path) served
        self.connection_limit = ConnectionLimit(cap=0)  # its cap is set when the server starts

    def make_writer(self, inbound: InboundMessage) -> ReplyWriter:
        """How this turn's reply reaches the chat; the outbox hears when the turn is over."""
        return FinishedInOutbox(self._writer_for(inbound), inbound.id, self.outbox)

    def _writer_for(self, inbound: InboundMessage) -> ReplyWriter:
        """Streamed by edits, in pieces, or whole."""
        channel = self.channels.get(inbound.channel)
        if channel is None:
            return BufferedReply(inbound, self.bus.outbound.publish)
        own = getattr(channel, "make_writer", None)  # e.g. the web chat streams over SSE
        if own is not None:
            return own(inbound)
        caps = channel.capabilities
        streaming = getattr(getattr(self.config.channels, inbound.channel), "streaming", None)
        if caps.can_edit and streaming is not None and streaming.enabled:
            return StreamingReply(
                inbound,
                caps,
                self.dispatcher.send,
                interval=streaming.flush_interval or caps.flush_interval,
                tool_progress=streaming.tool_progress,
                mode=streaming.mode,
            )
        return PieceReply(inbound, self.dispatcher.send)

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
        self.data_dir.claim()  # a second daemon on the same data_dir stops here
        await self.agent.open()  # the session store: a bad data_dir fails here, not mid-chat
        await self.outbox.open()
        # Create channels (imports only the enabled platforms' libraries).
        for name in self.config.channels.enabled():
            try:
                cls = channel_registry.load(name)
            except ImportError as exc:
                log.error("channel %s is not available: %s", name, exc)
                continue
            self.channels[name] = cls(getattr(self.config.channels, name), self.intake)
            if (bind := getattr(self.channels[name], "bind", None)) is not None:
                bind(self)  # e.g. the web chat: run events, session history
        for name in self.channels:
            streaming = getattr(getattr(self.config.channels, name), "streaming", None)
            if streaming is not None and (streaming.mode == "native" or streaming.show_reasoning):
                log.warning(
                    "channels.%s.streaming: mode native and show_reasoning are not implemented "
                    "yet; streaming by edits",
                    name,
                )
        # The HTTP server first: webhooks must be reachable when platforms start sending.
        await self._start_http()
        self._spawn(self._watch_storage(), "storage watch")
        self._spawn(self.dispatcher.run(self.bus.outbound), "dispatcher")
        self._spawn(self.agent_loop.run(), "agent")
        self.dispatcher.start_janitor()
        # Start channels; one that fails is reported (and in /readyz), the others run on.
        # Turns the previous run never finished: listed before channels start, so messages
        # this run records are not mistaken for them.
        unfinished = await self.outbox.unfinished()
        for name, channel in self.channels.items():
            await self._start_channel(name, channel)
        await self._recover(unfinished)
        log.info("ready: %s", ", ".join(f"{n}={c.state.value}" for n, c in self.channels.items()))
        if "web" in self.channels:
            log.info("web chat: http://%s:%s/", self.config.http.host, self.port)
        else:
            log.info("no web chat enabled; chat in a terminal with `picobot chat`")

    async def _recover(self, replayed: list[InboundMessage]) -> None:
        """Deliver what a previous run left in the outbox; run turns it never finished."""
        resumed = await self.dispatcher.resume()
        for msg in replayed:
            if msg.channel in self.channels:
                await self.bus.inbound.publish(msg)
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
            self._routes(),
            expected=lambda: self.config.channels.enabled(),
            access=Access.of(self.config),  # fixed for this run: a reload cannot widen it
            storage=self.data_dir.problem,
        )
        limit = self.connection_limit
        limit.cap = connection_cap(raise_fd_limit())
        app.middlewares.append(limit.middleware)
        quiet_accept_errors(asyncio.get_running_loop())
        quiet_client_errors()
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, keepalive_timeout=HEADER_TIMEOUT
        )
        await self._runner.setup()
        site = LimitedSite(self._runner, self.config.http.host, self.config.http.port, limit)
        await site.start()
        log.info("http server on http://%s:%s", self.config.http.host, self.port)

    def _routes(self) -> list[web.AbstractRouteDef]:
        """The channels' routes, each resolved per request to the channel running under that
        name now, so a channel restarted by a reload serves its routes (the paths stay fixed)."""
        result: list[web.AbstractRouteDef] = []
        for name, channel in self.channels.items():
            for route in channel.http_routes():
                if isinstance(route, web.RouteDef):
                    self._mounted.add((name, route.method, route.path))
                    handler = self._route_handler(name, route.method, route.path)
                    route = web.RouteDef(route.method, route.path, handler, route.kwargs)
                result.append(route)
        return result

    def _route_handler(self, name: str, method: str, path: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            channel = self.channels.get(name)
            for route in channel.http_routes() if channel is not None else ():
                if isinstance(route, web.RouteDef) and (route.method, route.path) == (method, path):
                    return await route.handler(request)
            raise web.HTTPNotFound()

        return handler

    @property
    def port(self) -> int:
        """The bound port (useful when the config asked for port 0)."""
        if self._runner is None or not self._runner.addresses:
            return self.config.http.port
        return int(self._runner.addresses[0][1])

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s crashed", task.get_name(), exc_info=task.exception())
            self.stopped.set()

    async def status(self) -> dict[str, object]:
        for topic in (self.bus.inbound, self.bus.outbound):
            metrics.QUEUE_DEPTH.labels(topic.name).set(topic.statistics().size)
        return {
            "uptime": round(time.time() - self.started_at, 1),
            "rss_bytes": rss_bytes(),
            "channels": {
                n: {"state": c.state.value, "detail": c.state_detail}
                for n, c in self.channels.items()
            },
            "bus": {
                t.name: t.statistics()._asdict() for t in (self.bus.inbound, self.bus.outbound)
            },
            "dispatch": self.dispatcher.statistics(),
            "intake": {  # counts, not ids: /api/status may be reachable by others
                n: {
                    "allowed": "everyone" if "*" in p.allow_from else len(p.allow_from),
                    "inbound_rate": p.inbound_rate,
                }
                for n, p in self._policies.items()
                if n != "web"  # the web chat checks its token instead
            },
            "outbox": {
                **await self.outbox.counts(),
                "dead_letters": [d._asdict() for d in await self.outbox.dead_letters(5)],
            },
        }

    def summary_line(self) -> str:
        """One line for systemd's STATUS=, e.g. "telegram=connected, web=connected"."""
        return ", ".join(f"{n}={c.state.value}" for n, c in self.channels.items()) or "no channels"

    # -- reload -----------------------------------------------------------------------------

    async def reload(self, new: Config) -> list[str]:
        """Apply `new` without a restart where possible (see `picobot.runtime.reload.apply`)."""
        async with self._reload_lock:
            return await reload.apply(self, new)

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

    async def _start_channel(self, name: str, channel: Channel) -> None:
        channel.set_state(State.STARTING)
        try:
            await channel.start()
        except Exception as exc:
            channel.set_state(State.FAILED, str(exc))
            log.error("channel %s failed to start: %s", name, exc)
            if isinstance(exc, TransientError):  # platform unreachable at boot: keep trying
                self._spawn(self._retry_start(name, channel), f"start {name}")
        else:
            if channel.state is State.STARTING:
                channel.set_state(State.CONNECTED)

    async def _retry_start(self, name: str, channel: Channel) -> None:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TransientError),
            wait=wait_exponential_jitter(multiplier=START_RETRY_FIRST, max=START_RETRY_MAX),
            before_sleep=lambda state: log.info("channel %s: start retry soon", name),
            reraise=True,
        )
        try:
            await retrying(channel.start)
        except Exception as exc:
            channel.set_state(State.FAILED, str(exc))
            log.error("channel %s failed to start: %s", name, exc)
        else:
            if channel.state in (State.STARTING, State.FAILED):
                channel.set_state(State.CONNECTED)
            log.info("channel %s started after retrying", name)

    # -- shutdown ---------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Drain (stop intake, let turns finish, deliver), then close. Cancelled mid-drain
        (a forced stop), it still closes."""
        try:
            await self._drain()
        finally:
            await self._close()

    async def _drain(self) -> None:
        timeout = self.config.dispatch.drain_timeout
        deadline = asyncio.get_running_loop().time() + timeout
        # Stop intake: channels stop fetching, new inbound messages are refused from now on.
        for name, channel in self.channels.items():
            try:
                await channel.stop_intake()
            except Exception as exc:
                log.warning("channel %s did not stop intake cleanly: %s", name, exc)
        self.bus.inbound.close()
        # Let running turns finish, within the drain timeout.
        await self.agent_loop.drain(timeout)
        # Deliver what the turns produced, with what is left of the timeout.
        self.bus.outbound.close()
        remaining = max(0.0, deadline - asyncio.get_running_loop().time())
        for task in self._tasks:
            if task.get_name() == "dispatcher":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), remaining)
        if not await self.dispatcher.drain(max(0.0, deadline - asyncio.get_running_loop().time())):
            log.warning("drain timeout: some outbound messages were not delivered")

    async def _close(self) -> None:
        """Cancel what is left and close everything; the only part of `shutdown` a forced
        stop runs (so the databases close and no worker thread keeps the process alive)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.dispatcher.aclose()
        await self.agent_loop.drain(0)  # turns that waited on a delivery end now
        # Close channels, then the HTTP server and the model client.
        for name, channel in reversed(self.channels.items()):
            try:
                await channel.stop()
            except Exception as exc:
                log.warning("channel %s did not stop cleanly: %s", name, exc)
            channel.set_state(State.STOPPED)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.agent.aclose()
        await self.agent.llm.aclose()
        await self.outbox.aclose()
        self.data_dir.release()
        log.info("stopped")


def rss_bytes() -> int:
    """Resident memory now (/proc/self/statm), else the peak (getrusage, off Linux)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def run(
    config: Config,
    *,
    config_path: str | Path | None = None,
    on_ready: Callable[[Daemon], None] | None = None,
) -> int:
    """Run until SIGTERM/SIGINT; a second signal skips the graceful drain. Returns 0.

    SIGHUP re-reads `config_path` (see `Daemon.reload`). Under systemd (``Type=notify``) it
    reports READY/RELOADING/STOPPING and a STATUS line, and pings the watchdog from the loop.
    """
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    daemon = Daemon(config)
    notifier = Notifier()
    signals = 0
    ready = False
    reloads: set[asyncio.Task[None]] = set()

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        forcing = signals > 1
        log.info("received %s%s", signal.Signals(signum).name, ", forcing exit" if forcing else "")
        if not forcing:
            daemon.stopped.set()
        elif main is not None and signals == 2:
            exit_soon()  # should closing hang: the process goes anyway
            main.cancel()  # skips the drain; shutdown still closes what holds data

    async def reload_config(path: str | Path) -> None:
        notifier.reloading()
        try:
            await daemon.reload_file(path)
        except Exception:
            log.exception("reload failed")
        finally:
            notifier.ready(f"ready: {daemon.summary_line()}")

    def on_hangup() -> None:
        if config_path is None:
            log.warning("received SIGHUP: nothing to reload (started without a config file)")
        elif not ready:
            log.warning("received SIGHUP while starting or stopping: ignored")
        else:
            log.info("received SIGHUP: reloading %s", config_path)
            task = loop.create_task(reload_config(config_path), name="reload")
            reloads.add(task)
            task.add_done_callback(reloads.discard)

    # Before startup: a signal during startup must stop us gracefully, not kill us.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    # Pinged from the loop itself, through startup and shutdown: a wedged loop stops pinging.
    watchdog = loop.create_task(notifier.watchdog(), name="watchdog")
    try:
        async with daemon:
            ready = True
            notifier.ready(f"ready: {daemon.summary_line()}")
            if on_ready is not None:
                on_ready(daemon)
            await daemon.stopped.wait()
            ready = False
            notifier.stopping()
            # A reload half-way through starting a channel finishes before teardown.
            await asyncio.gather(*reloads, return_exceptions=True)
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog
        notifier.close()
    return 0
