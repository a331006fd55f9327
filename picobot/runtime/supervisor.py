"""The channel supervisor: starts, retries, replaces and stops the platform channels.

The daemon and SIGHUP reload use only this public API. A channel that cannot start is retried
with backoff in a task of its own (one per channel, kept here), so it never delays the others,
startup or shutdown; a replaced channel's retry task is cancelled before its successor starts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from aiohttp import web

from picobot.core.channel import Channel, ServesHttp, State
from picobot.core.errors import TransientError
from picobot.core.retry import backoff, retrying
from picobot.core.tasks import cancel_and_wait

log = logging.getLogger("picobot")

START_RETRY_FIRST = 2.0  # seconds before the first retry of a channel that could not start
START_RETRY_MAX = 60.0

# Makes the channel `name` from its config section; None when its library is missing.
Factory = Callable[[str, Any], Channel | None]
Hook = Callable[[Channel], None]
Stopping = Callable[[str], Awaitable[None]]  # awaited with a channel's name before it stops


class ChannelSupervisor:
    """Owns the running channels. `channels` is a live, read-only view by name."""

    def __init__(
        self,
        factory: Factory,
        *,
        on_start: Hook | None = None,
        on_stop: Hook | None = None,
        before_stop: Stopping | None = None,
        retry_first: float = START_RETRY_FIRST,
        retry_max: float = START_RETRY_MAX,
    ) -> None:
        self._factory = factory
        self._on_start = on_start
        self._on_stop = on_stop
        self._before_stop = before_stop  # cluster mode: its connection's lease is handed over
        self._retry_first = retry_first
        self._retry_max = retry_max
        self._channels: dict[str, Channel] = {}
        self._retries: dict[str, asyncio.Task[None]] = {}
        self._mounted: set[tuple[str, str, str]] = set()  # (channel, method, path) served
        self.channels: Mapping[str, Channel] = MappingProxyType(self._channels)

    # -- lifecycle --------------------------------------------------------------------------

    def create(self, name: str, config: Any) -> Channel | None:
        """Make `name` (not started yet), replacing nothing; None if it is not available."""
        channel = self._factory(name, config)
        if channel is not None:
            self._channels[name] = channel
            if self._on_start is not None:
                self._on_start(channel)
        return channel

    async def start_all(self, *, unless: asyncio.Event | None = None) -> None:
        """Start every created channel at once; one that fails does not hold the others.
        `unless` set meanwhile (a stop requested) cancels the starts still running, so a
        platform that hangs cannot hold up a shutdown."""
        starts: asyncio.Future[Any] = asyncio.gather(
            *(self._start(n, c) for n, c in list(self._channels.items()))
        )
        if unless is None:
            await starts
            return
        stop: asyncio.Future[Any] = asyncio.ensure_future(unless.wait())
        try:
            await asyncio.wait((starts, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(stop, starts)

    async def replace(self, name: str, config: Any) -> None:
        """Stop the running `name` (if any) and start a new one from `config` (if enabled)."""
        await self.stop(name)
        if not config.enabled:
            log.info("channel %s stopped", name)
            return
        channel = self.create(name, config)
        if channel is None:
            return
        for method, path in _paths(channel):
            if (name, method, path) not in self._mounted:
                # The router is fixed once serving: a new route waits for a restart.
                log.warning("reload: %s serves %s %s only after a restart", name, method, path)
        await self._start(name, channel)
        log.info("channel %s restarted: %s", name, channel.state.value)

    async def stop(self, name: str) -> None:
        """Stop `name` and forget it (its retry task first, so it cannot come back)."""
        retry = self._retries.pop(name, None)
        if retry is not None:
            await cancel_and_wait(retry)
        channel = self._channels.pop(name, None)
        if channel is None:
            return
        if self._on_stop is not None:
            self._on_stop(channel)
        try:
            if self._before_stop is not None:
                await self._before_stop(name)
            await channel.stop()
        except Exception as exc:
            log.warning("channel %s did not stop cleanly: %s", name, exc)
        channel.set_state(State.STOPPED)

    async def stop_intake(self) -> None:
        """First step of shutdown: every channel stops taking platform events."""
        for name, channel in list(self._channels.items()):
            try:
                await channel.stop_intake()
            except Exception as exc:
                log.warning("channel %s did not stop intake cleanly: %s", name, exc)

    async def aclose(self) -> None:
        """Stop every channel, in reverse order of creation."""
        for name in reversed(list(self._channels)):
            await self.stop(name)

    # -- HTTP routes ------------------------------------------------------------------------

    def routes(self) -> list[web.AbstractRouteDef]:
        """The channels' routes, each resolved per request to the channel running under that
        name now, so a channel replaced by a reload serves its routes (the paths stay fixed)."""
        result: list[web.AbstractRouteDef] = []
        route: web.AbstractRouteDef
        for name, channel in self._channels.items():
            if not isinstance(channel, ServesHttp):
                continue
            for route in channel.http_routes():
                if isinstance(route, web.RouteDef):
                    self._mounted.add((name, route.method, route.path))
                    handler = self._route_handler(name, route.method, route.path)
                    route = web.RouteDef(route.method, route.path, handler, route.kwargs)
                result.append(route)
        return result

    def _route_handler(self, name: str, method: str, path: str) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.StreamResponse:
            channel = self._channels.get(name)
            routes: Sequence[web.AbstractRouteDef] = ()
            if isinstance(channel, ServesHttp):
                routes = channel.http_routes()
            for route in routes:
                if isinstance(route, web.RouteDef) and (route.method, route.path) == (method, path):
                    response: web.StreamResponse = await route.handler(request)
                    return response
            raise web.HTTPNotFound()

        return handler

    def summary_line(self) -> str:
        """e.g. "telegram=connected, web=connected" (systemd's STATUS=, the ready log line)."""
        states = (f"{n}={c.state.value}" for n, c in self._channels.items())
        return ", ".join(states) or "no channels"

    # -- starting ---------------------------------------------------------------------------

    async def _start(self, name: str, channel: Channel) -> None:
        channel.set_state(State.STARTING)
        try:
            await channel.start()
        except Exception as exc:
            channel.set_state(State.FAILED, str(exc))
            log.error("channel %s failed to start: %s", name, exc)
            if isinstance(exc, TransientError):  # platform unreachable at boot: keep trying
                task = asyncio.create_task(self._retry(name, channel), name=f"start {name}")
                self._retries[name] = task
        else:
            if channel.state is State.STARTING:
                channel.set_state(State.CONNECTED)

    async def _retry(self, name: str, channel: Channel) -> None:
        delay = backoff(self._retry_first, self._retry_max)
        attempts = retrying(
            retry_on=TransientError,
            wait=lambda exc, attempt: delay(attempt),
            on_retry=lambda exc, seconds, attempt: log.info(
                "channel %s: start retry in %.0f s (%s)", name, seconds, exc
            ),
        )
        try:
            await attempts(channel.start)
        except Exception as exc:
            channel.set_state(State.FAILED, str(exc))
            log.error("channel %s failed to start: %s", name, exc)
        else:
            if channel.state in (State.STARTING, State.FAILED):
                channel.set_state(State.CONNECTED)
            log.info("channel %s started after retrying", name)
        finally:
            if self._retries.get(name) is asyncio.current_task():
                del self._retries[name]


def _paths(channel: Channel) -> Iterable[tuple[str, str]]:
    if isinstance(channel, ServesHttp):
        for route in channel.http_routes():
            if isinstance(route, web.RouteDef):
                yield route.method, route.path
