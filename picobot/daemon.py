"""The daemon: startup, main loop, shutdown — the data path assembled once.

    channel ─► Intake ─► bus.inbound ─► AgentLoop ─► reply writer
            ─► bus.outbound ─► Dispatcher (lanes) ─► channel

Resources open in dependency order in `startup()` and close in reverse in `shutdown()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

import channels as channel_registry
from channels.base import Channel, State
from picobot import metrics
from picobot.agent.llm import LLM
from picobot.agent.loop import Agent, AgentLoop, BufferedReply, ReplyWriter
from picobot.bus import Bus
from picobot.config import Config, summary
from picobot.dispatch import Dispatcher, DispatchSettings
from picobot.errors import ConfigError
from picobot.http import make_app
from picobot.intake import Intake, Policy
from picobot.messages import InboundMessage
from picobot.retry import RetryPolicy
from picobot.streaming import PieceReply, StreamingReply

log = logging.getLogger("picobot")


def make_llm(config: Config) -> LLM:
    if config.llm.provider == "demo":
        from picobot.agent.demo import DemoLLM

        return DemoLLM()
    try:
        from picobot.agent.openai_llm import OpenAILLM  # type: ignore[import-not-found]
    except ImportError:
        raise ConfigError("llm.provider", "the openai provider is not available") from None
    return OpenAILLM(config.llm)


def policies(config: Config) -> dict[str, Policy]:
    result = {}
    for name in config.channels.enabled():
        cfg = getattr(config.channels, name)
        if name == "web":
            result[name] = Policy()  # the web chat has its own access check (token)
            continue
        result[name] = Policy(
            allow_from=cfg.allow_from,
            group_policy=cfg.group_policy,
            inbound_rate=cfg.inbound_rate,
            placeholder=cfg.placeholder.text if cfg.placeholder.enabled else "",
        )
    return result


class Daemon:
    """One running picobot. `async with Daemon(config) as d: await d.stopped.wait()`."""

    def __init__(self, config: Config, llm: LLM | None = None) -> None:
        self.config = config
        self.bus = Bus()
        self.channels: dict[str, Channel] = {}
        d = config.dispatch
        self.dispatcher = Dispatcher(
            self.channels,
            DispatchSettings(
                retry=RetryPolicy(max_attempts=d.max_attempts, max_backoff=d.max_backoff),
                typing_ttl=d.typing_ttl,
                placeholder_ttl=d.placeholder_ttl,
            ),
        )
        self.intake = Intake(self.bus.inbound, self.dispatcher.submit, policies(config))
        self.agent = Agent(llm or make_llm(config), config.agent, data_dir=config.data_dir)
        self.agent_loop = AgentLoop(
            self.agent, self.bus.inbound, self.make_writer, publish=self.bus.outbound.publish
        )
        self.stopped = asyncio.Event()
        self.started_at = time.time()
        self._tasks: list[asyncio.Task[Any]] = []
        self._runner: web.AppRunner | None = None

    def make_writer(self, inbound: InboundMessage) -> ReplyWriter:
        """How this turn's reply reaches the chat: streamed by edits, in pieces, or whole."""
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
                self.dispatcher.submit,
                interval=streaming.flush_interval or caps.flush_interval,
                tool_progress=streaming.tool_progress,
            )
        return PieceReply(inbound, self.dispatcher.submit)

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
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        await self.agent.open()  # the session store: a bad data_dir fails here, not mid-chat
        # Create channels (imports only the enabled platforms' libraries).
        for name in self.config.channels.enabled():
            try:
                cls = channel_registry.load(name)
            except ImportError as exc:
                log.error("channel %s is not available: %s", name, exc)
                continue
            self.channels[name] = cls(getattr(self.config.channels, name), self.intake)
        # The HTTP server first: webhooks must be reachable when platforms start sending.
        await self._start_http()
        self._spawn(self.dispatcher.run(self.bus.outbound), "dispatcher")
        self._spawn(self.agent_loop.run(), "agent")
        self.dispatcher.start_janitor()
        # Start channels; one that fails is reported (and in /readyz), the others run on.
        for name, channel in self.channels.items():
            channel.set_state(State.STARTING)
            try:
                await channel.start()
            except Exception as exc:
                channel.set_state(State.FAILED, str(exc))
                log.error("channel %s failed to start: %s", name, exc)
            else:
                if channel.state is State.STARTING:
                    channel.set_state(State.CONNECTED)
        log.info("ready: %s", ", ".join(f"{n}={c.state.value}" for n, c in self.channels.items()))

    async def _start_http(self) -> None:
        routes = [r for ch in self.channels.values() for r in ch.http_routes()]
        app = make_app(self.channels, self.status, routes)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.http.host, self.config.http.port)
        await site.start()
        log.info("http server on http://%s:%s", self.config.http.host, self.port)

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

    def status(self) -> dict[str, object]:
        for topic in (self.bus.inbound, self.bus.outbound):
            metrics.QUEUE_DEPTH.labels(topic.name).set(topic.statistics().size)
        return {
            "uptime": round(time.time() - self.started_at, 1),
            "channels": {
                n: {"state": c.state.value, "detail": c.state_detail}
                for n, c in self.channels.items()
            },
            "bus": {
                t.name: t.statistics()._asdict() for t in (self.bus.inbound, self.bus.outbound)
            },
            "dispatch": self.dispatcher.statistics(),
        }

    # -- shutdown ---------------------------------------------------------------------------

    async def shutdown(self) -> None:
        timeout = self.config.dispatch.drain_timeout
        deadline = asyncio.get_running_loop().time() + timeout
        # Stop intake: new inbound messages are refused from now on.
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
        # Cancel what is left.
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.dispatcher.aclose()
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
        log.info("stopped")


async def run(config: Config, *, on_ready: Callable[[Daemon], None] | None = None) -> int:
    """Run until SIGTERM/SIGINT; a second signal skips the graceful drain. Returns 0."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    daemon = Daemon(config)
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        forcing = signals > 1
        log.info("received %s%s", signal.Signals(signum).name, ", forcing exit" if forcing else "")
        if not forcing:
            daemon.stopped.set()
        elif main is not None:
            main.cancel()

    # Before startup: a signal during startup must stop us gracefully, not kill us.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    async with daemon:
        if on_ready is not None:
            on_ready(daemon)
        await daemon.stopped.wait()
    return 0
