"""The channel supervisor's public API: start, retry, replace, stop, routes."""

import asyncio
from types import SimpleNamespace
from typing import Any

from aiohttp import web

from picobot.core.channel import Channel, ServesHttp, State
from picobot.core.errors import ChannelTimeout
from picobot.runtime.supervisor import ChannelSupervisor
from tests.fakes.memory_channel import MemoryChannel

TIMEOUT = 10


class Unreachable(MemoryChannel):
    """Cannot start until `reachable` is set; counts its attempts."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name)
        self.reachable = asyncio.Event()
        self.attempts = 0
        self.stopped = False
        self.started = asyncio.Event()

    async def start(self) -> None:
        self.attempts += 1
        if not self.reachable.is_set():
            raise ChannelTimeout("platform unreachable")
        self.started.set()

    async def stop(self) -> None:
        self.stopped = True


class Hooked(MemoryChannel, ServesHttp):
    async def hello(self, request: web.Request) -> web.Response:
        return web.Response(text=self.name)

    def http_routes(self) -> list[web.RouteDef]:
        return [web.get("/hook", self.hello)]


def enabled() -> Any:
    return SimpleNamespace(enabled=True)


async def test_a_channel_that_cannot_start_does_not_hold_the_others() -> None:
    made: dict[str, Channel] = {}

    def factory(name: str, config: Any) -> Channel:
        made[name] = Unreachable(name) if name == "down" else MemoryChannel(name=name)
        return made[name]

    supervisor = ChannelSupervisor(factory, retry_first=0.01, retry_max=0.02)
    for name in ("down", "up"):
        supervisor.create(name, enabled())
    await supervisor.start_all()
    assert supervisor.channels["up"].state is State.CONNECTED
    down = made["down"]
    assert isinstance(down, Unreachable)
    assert down.state is State.FAILED
    down.reachable.set()  # the platform comes back: the retry task connects it
    await asyncio.wait_for(down.started.wait(), TIMEOUT)
    assert down.attempts >= 2
    await supervisor.aclose()
    assert dict(supervisor.channels) == {}


async def test_replacing_a_channel_cancels_its_retry_and_hooks_see_both() -> None:
    events: list[tuple[str, int]] = []
    old = Unreachable("tg")
    new = MemoryChannel(name="tg")
    instances = iter([old, new])
    supervisor = ChannelSupervisor(
        lambda name, config: next(instances),
        on_start=lambda ch: events.append(("start", id(ch))),
        on_stop=lambda ch: events.append(("stop", id(ch))),
        retry_first=0.01,
        retry_max=0.02,
    )
    supervisor.create("tg", enabled())
    await supervisor.start_all()
    await supervisor.replace("tg", enabled())
    assert old.stopped and old.state is State.STOPPED  # its retry task went with it
    assert supervisor.channels["tg"] is new and new.state is State.CONNECTED
    assert events == [("start", id(old)), ("stop", id(old)), ("start", id(new))]
    await supervisor.replace("tg", SimpleNamespace(enabled=False))
    assert "tg" not in supervisor.channels


async def test_before_stop_is_awaited_before_a_channel_stops() -> None:
    """Cluster mode hands a channel's connection lease over there (a reload, a shutdown)."""
    old, new = Unreachable("tg"), Unreachable("tg")
    old.reachable.set()
    new.reachable.set()
    instances = iter([old, new])
    handed_over: list[tuple[str, bool]] = []  # (name, was that channel stopped already?)

    async def before_stop(name: str) -> None:
        handed_over.append((name, old.stopped if not handed_over else new.stopped))

    supervisor = ChannelSupervisor(lambda name, config: next(instances), before_stop=before_stop)
    supervisor.create("tg", enabled())
    await supervisor.start_all()
    await supervisor.replace("tg", enabled())
    assert handed_over == [("tg", False)] and old.stopped
    await supervisor.aclose()
    assert handed_over == [("tg", False), ("tg", False)] and new.stopped


async def test_routes_follow_the_channel_running_under_the_name() -> None:
    instances = iter([Hooked(name="first"), Hooked(name="second")])
    supervisor = ChannelSupervisor(lambda name, config: next(instances))
    supervisor.create("hooked", enabled())
    [route] = supervisor.routes()
    assert isinstance(route, web.RouteDef)
    response = await route.handler(None)  # type: ignore[arg-type]
    assert response.text == "first"
    await supervisor.replace("hooked", enabled())
    response = await route.handler(None)  # type: ignore[arg-type]
    assert response.text == "second"
