"""Reminders and MCP servers end to end: `picobot run` (a subprocess) against FakeTelegram and
the fake OpenAI server, which scripts the model's `schedule` call.

A reminder scheduled for 2 s later survives a SIGKILL and arrives exactly once after the
restart. A stdio MCP server is a child of the daemon that never outlives it: not after a
SIGTERM, nor after a SIGKILL (its stdin closes, and a well-behaved server exits).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.e2e.harness import TIMEOUT, running, status
from tests.fakes.fake_openai import FakeOpenAI, Reply, ToolCall
from tests.fakes.fake_telegram import FakeTelegram

MCP_SERVER = str(Path(__file__).resolve().parents[1] / "fakes" / "mcp_server.py")
CHAT = 501


def write_config(tmp: Path, tg: FakeTelegram, llm: FakeOpenAI, **extra: Any) -> Path:
    config = tg.picobot_config(tmp / "data", placeholder={"enabled": False})
    config |= {
        "llm": {
            "provider": "openai",
            "base_url": llm.base_url,
            "api_key": "sk-test",
            "model": "fake-model",
            "max_retries": 0,
        },
        "agent": {"tools": ["time", "message", "schedule"]},
        "dispatch": {"max_backoff": 1},
        **extra,
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def texts(tg: FakeTelegram) -> list[str]:
    return [m.text for m in tg.chat_log(CHAT)]


def entries(data_dir: Path) -> int:
    with contextlib.closing(sqlite3.connect(data_dir / "schedule.db")) as db:
        return int(db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])


async def test_a_reminder_survives_sigkill_and_arrives_exactly_once(tmp_path: Path) -> None:
    async with FakeTelegram() as tg, FakeOpenAI() as llm:
        config = write_config(tmp_path, tg, llm)
        llm.script(
            Reply(tool_calls=[ToolCall("schedule", {"text": "drink water", "in_seconds": 2})]),
            Reply(text="Reminder set."),
        )
        async with running(config) as bot:
            await bot.ready()
            tg.user_message(CHAT, "remind me to drink water in 2 seconds")
            await tg.wait_for(lambda f: "Reminder set." in texts(f), TIMEOUT)
            assert await bot.stop(signal.SIGKILL) == -signal.SIGKILL
        fired_before_kill = "⏰ drink water" in texts(tg)
        async with running(config) as bot:
            await bot.ready()
            await tg.wait_for(lambda f: "⏰ drink water" in texts(f), TIMEOUT)
            assert await bot.stop() == 0
        assert texts(tg).count("⏰ drink water") == 1, (texts(tg), fired_before_kill)
        assert entries(tmp_path / "data") == 0
        tool_results = [m for m in llm.requests[1]["messages"] if m["role"] == "tool"]
        assert tool_results[0]["content"].startswith("Scheduled #1 ")


async def wait_gone(pid: int, timeout: float = TIMEOUT) -> None:
    """Wait until process `pid` has exited (pidfd readable), not by polling."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    gone = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(fd, gone.set)
    try:
        async with asyncio.timeout(timeout):
            await gone.wait()
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)  # do not leave it behind
        raise AssertionError(f"MCP server {pid} outlived the daemon") from None
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def test_mcp_servers_show_in_status_and_die_with_the_daemon(tmp_path: Path) -> None:
    pidfile = tmp_path / "mcp.pid"
    async with FakeTelegram() as tg, FakeOpenAI() as llm:
        server = {
            "command": [sys.executable, MCP_SERVER],
            "env": {"MCP_TEST_PIDFILE": str(pidfile)},
        }
        broken = {"command": ["/nonexistent/mcp-server"]}
        config = write_config(tmp_path, tg, llm, mcp={"servers": {"files": server, "bad": broken}})
        for signum in (signal.SIGTERM, signal.SIGKILL):
            pidfile.unlink(missing_ok=True)
            async with running(config) as bot:
                port = await bot.ready()  # a broken MCP server does not hold up the start
                await bot.wait_line(r"mcp server files: connected, 8 tools")
                await bot.wait_line(r"WARNING .*mcp server bad failed")
                pid = int(pidfile.read_text())
                out = await status(tmp_path, port)
                assert "  files: connected, 8 tools" in out, out
                assert "  bad: failed, 0 tools (" in out, out
                async with aiohttp.ClientSession() as http:
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                        ready = await response.json()
                assert ready["ready"] and ready["mcp"]["files"]["state"] == "connected"
                await bot.stop(signum)
            await wait_gone(pid)
