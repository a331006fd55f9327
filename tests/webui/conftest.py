"""A real daemon on the demo model, and a small SSE reader."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from picobot.agent.demo import DemoLLM
from picobot.config import parse_config
from picobot.runtime.daemon import Daemon

TIMEOUT = 10.0  # every wait is bounded: a bug fails the test, it does not hang


@dataclass(frozen=True, slots=True)
class SSE:
    id: int
    event: str
    data: dict[str, Any]


async def read_events(response: aiohttp.ClientResponse, *, until: str = "done") -> list[SSE]:
    """Parse an event stream until an `until` event (inclusive) or the end of the stream."""
    events: list[SSE] = []
    fields: dict[str, str] = {}
    async with asyncio.timeout(TIMEOUT):
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if line:
                if not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
                continue
            if "event" in fields:
                events.append(SSE(int(fields["id"]), fields["event"], json.loads(fields["data"])))
                if events[-1].event == until:
                    break
            fields = {}
    return events


@dataclass
class Running:
    daemon: Daemon
    http: aiohttp.ClientSession

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.daemon.port}"

    async def post(self, text: str, session: str | None = None, **kw: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"text": text}
        if session:
            body["session"] = session
        async with self.http.post(self.base + "/api/messages", json=body, **kw) as r:
            assert r.status == 202, await r.text()
            return await r.json()

    async def events(self, run_id: str, **kw: Any) -> list[SSE]:
        async with self.http.get(f"{self.base}/api/runs/{run_id}/events", **kw) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/event-stream")
            return await read_events(r)


StartDaemon = Callable[..., AbstractAsyncContextManager[Running]]


@pytest.fixture
def start_daemon(tmp_path: Path) -> StartDaemon:
    @asynccontextmanager
    async def start(
        web: dict[str, Any] | None = None, delay: float = 0.0, port: int = 0, **more: Any
    ) -> AsyncIterator[Running]:
        data = {
            "http": {"port": port},
            "data_dir": str(tmp_path),
            "channels": {"web": web or {}},
            **more,
        }
        config = parse_config(data, env={})
        async with Daemon(config, llm=DemoLLM(delay=delay)) as daemon:
            async with aiohttp.ClientSession() as http:
                yield Running(daemon, http)

    return start
