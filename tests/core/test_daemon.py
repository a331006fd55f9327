"""The daemon's own duties, with an in-process channel standing in for a platform."""

import asyncio
from pathlib import Path

import pytest

import channels
from picobot.agent.demo import DemoLLM
from picobot.config import parse_config
from picobot.core.errors import ChannelTimeout
from picobot.runtime import supervisor as supervisor_module
from picobot.runtime.daemon import Daemon
from tests.fakes.memory_channel import MemoryChannel


class FlakyChannel(MemoryChannel):
    """Cannot reach its platform for the first two starts."""

    def __init__(self, config: object, sink: object, services: object = None) -> None:
        super().__init__(sink, name="web")  # type: ignore[arg-type]
        self.starts = 0
        self.started = asyncio.Event()

    async def start(self) -> None:
        self.starts += 1
        if self.starts <= 2:
            raise ChannelTimeout("platform unreachable")
        self.started.set()


async def test_a_channel_that_cannot_start_is_retried_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(channels, "load", lambda name: FlakyChannel)
    monkeypatch.setattr(supervisor_module, "START_RETRY_FIRST", 0.01)
    config = parse_config({"http": {"port": 0}, "data_dir": str(tmp_path)}, env={})
    async with Daemon(config, llm=DemoLLM(delay=0)) as daemon:
        channel = daemon.channels["web"]
        assert isinstance(channel, FlakyChannel)
        await asyncio.wait_for(channel.started.wait(), 10)
        assert channel.starts == 3
        assert channel.connected
