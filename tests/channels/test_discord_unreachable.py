"""Discord out of reach: the real discord.py pointed at a port that refuses (or never answers)
connections, next to the web chat, in the real daemon. Nothing else waits for it."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yarl

from channels.discord_channel import DiscordChannel
from picobot.agent.demo import DemoLLM
from picobot.config import Config, parse_config
from picobot.core.channel import Channel, State
from picobot.runtime.daemon import Daemon
from picobot.runtime.supervisor import ChannelSupervisor

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # discord.py imports `audioop`
    import discord


@contextmanager
def discord_at(*, listen: bool) -> Iterator[None]:
    """Point discord.py at a local port that refuses connections, or (`listen`) accepts them
    into the backlog and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    if listen:
        sock.listen(64)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    route, ws_cls = discord.http.Route, discord.gateway.DiscordWebSocket
    old = route.BASE, ws_cls.DEFAULT_GATEWAY
    route.BASE, ws_cls.DEFAULT_GATEWAY = f"{url}/api/v10", yarl.URL(url.replace("http", "ws"))
    try:
        yield
    finally:
        route.BASE, ws_cls.DEFAULT_GATEWAY = old
        sock.close()


class Records(logging.Handler):
    """Every record of the loggers it is attached to; `wait(n, predicate)` without polling."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self._changed.set()

    async def wait(self, count: int, pattern: str) -> list[logging.LogRecord]:
        async with asyncio.timeout(30):
            while len(found := self.matching(pattern)) < count:
                self._changed.clear()
                await self._changed.wait()
        return found

    def matching(self, pattern: str) -> list[logging.LogRecord]:
        return [r for r in self.records if re.search(pattern, r.getMessage())]


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    loggers = [logging.getLogger(name) for name in ("picobot", "discord")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    yield handler
    for lg, level in zip(loggers, levels, strict=True):
        lg.removeHandler(handler)
        lg.setLevel(level)


def make_config(tmp_path: Path) -> Config:
    return parse_config(
        {
            "data_dir": str(tmp_path),
            "http": {"host": "127.0.0.1", "port": 0},
            "dispatch": {"drain_timeout": 1.0},
            "channels": {"discord": {"enabled": True, "token": "A.B.C", "allow_from": ["*"]}},
        },
        env={},
    )


async def test_unreachable_discord_delays_nothing_and_logs_a_line_per_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, records: Records
) -> None:
    monkeypatch.setattr(DiscordChannel, "ready_timeout", 3600.0)  # not what start() waits for
    monkeypatch.setattr(DiscordChannel, "reconnect_delay", 0.1)
    monkeypatch.setattr(DiscordChannel, "reconnect_max", 0.4)
    with discord_at(listen=False):
        async with asyncio.timeout(30), Daemon(make_config(tmp_path), llm=DemoLLM(0)) as daemon:
            assert daemon.channels["web"].state is State.CONNECTED
            assert daemon.channels["discord"].state is State.DISCONNECTED
            failures = await records.wait(6, r"discord connection failed")
            # One connect loop: its delays only grow (interleaved loops would restart at 0.1).
            delays = [float(re.findall(r"in ([\d.]+) s", r.getMessage())[0]) for r in failures]
            assert delays == sorted(delays) and delays[-1] == 0.4
            gateways = [t for t in asyncio.all_tasks() if t.get_name() == "discord gateway"]
            assert len(gateways) == 1
    # One line per attempt; the traceback only at debug level.
    loud = [r for r in records.records if r.levelno >= logging.WARNING]
    assert loud and all(r.exc_info is None for r in loud)
    assert not [r for r in loud if r.levelno >= logging.ERROR]
    assert any(r.exc_info for r in records.records if r.levelno == logging.DEBUG)


async def test_stop_during_a_hanging_discord_start_is_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DiscordChannel, "ready_timeout", 3600.0)
    started: dict[str, asyncio.Event] = {"web": asyncio.Event(), "discord": asyncio.Event()}
    start_channel = ChannelSupervisor._start

    async def observed(self: ChannelSupervisor, name: str, channel: Channel) -> None:
        await start_channel(self, name, channel)
        started[name].set()

    monkeypatch.setattr(ChannelSupervisor, "_start", observed)
    with discord_at(listen=True):  # login's first request is never answered
        daemon = Daemon(make_config(tmp_path), llm=DemoLLM(0))
        entering = asyncio.create_task(daemon.__aenter__())
        async with asyncio.timeout(30):
            await started["web"].wait()  # the web chat is up while Discord still starts
            assert not started["discord"].is_set()
            discord_channel = daemon.channels["discord"]
            daemon.stopped.set()  # SIGTERM
            await entering  # startup gives up on the hanging start
            await daemon.shutdown()
        assert discord_channel.state is State.STOPPED


def test_discord_py_reconnect_tracebacks_become_one_line(records: Records) -> None:
    """discord.py's own reconnect loop logs `_log.exception("Attempting a reconnect ...")`."""
    config = make_config(Path(".")).channels.discord
    DiscordChannel(config, lambda msg: asyncio.sleep(0))  # installs the filter
    try:
        raise OSError("Connect call failed")
    except OSError:
        logging.getLogger("discord.client").exception("Attempting a reconnect in %.2fs", 1.5)
    [line] = [r for r in records.records if r.levelno >= logging.WARNING]
    assert line.exc_info is None and line.levelname == "WARNING"
    assert line.getMessage() == (
        "discord gateway connection failed (OSError: Connect call failed); reconnecting in 1.5 s"
    )
    assert any(r.exc_info for r in records.records if r.levelno == logging.DEBUG)
