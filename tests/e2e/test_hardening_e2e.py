"""What a hostile and clumsy world does to `picobot run` (a subprocess): kills mid-turn, a
deleted data_dir, a full disk. Nothing is lost without a word.
"""

from __future__ import annotations

import contextlib
import json
import resource
import shutil
import signal
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from picobot.agent.turns import STORAGE_FAILURE
from picobot.storage.outbox import MAX_INBOUND_ATTEMPTS
from tests.e2e.harness import (
    TIMEOUT,
    FaultyTelegram,
    Picobot,
    outbox_counts,
    replies,
    running,
    status,
    write_config,
)
from tests.webui.conftest import read_events

CHAT = 501
SLOW = "0.5"  # seconds per word: a demo turn takes ~15 s, time enough to cut it


def inbound_rows(data_dir: Path) -> list[tuple[str, int]]:
    """(state, attempts) of each recorded inbound message (read while no daemon runs)."""
    with contextlib.closing(sqlite3.connect(data_dir / "outbox.db")) as db:
        return db.execute("SELECT state, attempts FROM inbound").fetchall()


async def turn_started(fake: FaultyTelegram, sent_before: int) -> int:
    """Wait for the turn's first streamed message (so it is running); the send count now."""
    await fake.wait_for(lambda f: len(f.send_attempts(CHAT)) > sent_before, TIMEOUT)
    return len(fake.send_attempts(CHAT))


async def test_a_turn_killed_too_often_is_given_up_with_a_log_line_and_a_dead_letter(
    tmp_path: Path,
) -> None:
    async with FaultyTelegram() as fake:
        config = write_config(tmp_path, fake, streaming=True)
        fake.user_message(CHAT, "ping-501-000")
        sent = 0
        for _ in range(MAX_INBOUND_ATTEMPTS):  # each run starts the turn; SIGKILL cuts it
            async with running(config, SLOW) as bot:
                await bot.ready()
                sent = await turn_started(fake, sent)
                assert await bot.stop(signal.SIGKILL) == -signal.SIGKILL
        async with running(config, SLOW) as bot:
            port = await bot.ready()
            line = await bot.wait_line(r"gave up on message \S+ in telegram:501: ")
            assert f"its turn was cut {MAX_INBOUND_ATTEMPTS} times" in line.string
            assert outbox_counts(await status(tmp_path, port)) == (0, 1)
            assert "dead: telegram:501: no reply: its turn was cut" in await status(tmp_path, port)
            assert await bot.stop() == 0
        assert inbound_rows(tmp_path / "data") == [("abandoned", MAX_INBOUND_ATTEMPTS)]


async def test_turns_cut_by_graceful_stops_are_not_failed_attempts(tmp_path: Path) -> None:
    async with FaultyTelegram() as fake:
        config = write_config(tmp_path, fake, streaming=True, drain_timeout=0.2)
        fake.user_message(CHAT, "ping-501-000")
        sent = 0
        for _ in range(MAX_INBOUND_ATTEMPTS + 1):  # SIGTERM cuts the turn each time
            async with running(config, SLOW) as bot:
                await bot.ready()
                sent = await turn_started(fake, sent)
                assert await bot.stop(signal.SIGTERM) == 0
        assert inbound_rows(tmp_path / "data") == [("received", 0)]
        async with running(config) as bot:  # at full speed: the turn finishes this time
            await bot.ready()
            await fake.wait_for(lambda f: replies(f, CHAT) == ["ping-501-000"], TIMEOUT)
            assert await bot.stop() == 0
        # Answered by its delivered reply, one attempt counted (its end had nothing to add).
        assert inbound_rows(tmp_path / "data") == [("answered", 1)]


# ---- the web chat's data_dir under the daemon's feet ----


def web_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    data = {
        "data_dir": str(tmp_path / "data"),
        "http": {"host": "127.0.0.1", "port": 0},
        "llm": {"provider": "demo"},
    }
    path.write_text(yaml.safe_dump(data))
    return path


async def web_daemon(bot: Picobot) -> str:
    port = (await bot.wait_line(r"http server on http://[^ ]+:(\d+)"))[1]
    await bot.wait_line(r" ready: web=connected")
    return f"http://127.0.0.1:{port}"


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as r:
        return r.status, await r.json()


async def post(http: aiohttp.ClientSession, base: str, text: str) -> tuple[int, Any]:
    body = {"text": text, "session": "s1"}
    async with http.post(base + "/api/messages", json=body) as r:
        return r.status, await r.json()


async def test_a_deleted_data_dir_makes_the_daemon_not_ready_and_says_so_once(
    tmp_path: Path,
) -> None:
    async with running(web_config(tmp_path)) as bot, aiohttp.ClientSession() as http:
        base = await web_daemon(bot)
        assert (await get_json(http, base + "/readyz"))[0] == 200
        shutil.rmtree(tmp_path / "data")
        line = await bot.wait_line(r"data_dir .*: deleted or replaced while running")
        assert "restart picobot" in line.string
        status_code, body = await get_json(http, base + "/readyz")
        assert (status_code, body["ready"], body["failing"]) == (503, False, ["storage"])
        assert "deleted" in body["storage"]
        assert await bot.stop() == 0
    assert sum("deleted or replaced" in line for line in bot.lines) == 1


async def test_a_full_disk_answers_503_is_not_ready_and_half_writes_no_turn(
    tmp_path: Path,
) -> None:
    async with running(web_config(tmp_path), "0.05") as bot, aiohttp.ClientSession() as http:
        base = await web_daemon(bot)
        assert bot.proc is not None
        code, accepted = await post(http, base, "hello")
        assert code == 202
        async with http.get(f"{base}/api/runs/{accepted['run_id']}/events") as stream:
            first = await read_events(stream, until="text_delta")
            assert first[-1].event == "text_delta"  # the turn is running
            # The disk is full from now on: no file of the daemon's may grow.
            resource.prlimit(bot.proc.pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
            rest = await read_events(stream)
        assert rest[-1].event == "done"
        assert {"event": "error", "message": STORAGE_FAILURE} in [
            {"event": e.event, **e.data} for e in rest
        ]
        await bot.wait_line(r"data_dir .*: writes fail")
        code, body = await post(http, base, "while full")
        assert code == 503 and "try again later" in body["error"]
        code, body = await get_json(http, base + "/readyz")
        assert (code, body["failing"]) == (503, ["storage"])
        # Nothing of the cut turn in the history: neither the question nor half an answer.
        assert await get_json(http, base + "/api/sessions/s1/messages") == (200, [])
        unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        resource.prlimit(bot.proc.pid, resource.RLIMIT_FSIZE, unlimited)
        code, _ = await post(http, base, "space again")
        assert code == 202
        assert (await get_json(http, base + "/readyz"))[0] == 200
        assert await bot.stop() == 0
    assert "Traceback" not in "\n".join(bot.lines)
    # The message whose turn could not be saved is kept, to run again at the next start.
    with contextlib.closing(sqlite3.connect(tmp_path / "data" / "outbox.db")) as db:
        rows = db.execute("SELECT data, state FROM inbound").fetchall()
    states = {json.loads(data)["text"]: state for data, state in rows}
    assert states["hello"] == "received"


# ---- signals ----

FORCED_EXIT_BOUND = 15.0  # a forced exit takes a few seconds; the old code hung for minutes


async def test_a_second_sigterm_forces_exit_and_the_turn_is_recovered(tmp_path: Path) -> None:
    async with FaultyTelegram() as fake:
        config = write_config(tmp_path, fake, streaming=True)  # a 10 s graceful drain
        async with running(config, SLOW) as bot:
            await bot.ready()
            fake.user_message(CHAT, "ping-501-000")
            await turn_started(fake, 0)
            assert bot.proc is not None
            bot.proc.send_signal(signal.SIGTERM)
            await bot.wait_line(r"received SIGTERM: finishing 1 turn")  # ~15 s to go
            code = await bot.stop(signal.SIGTERM, timeout=FORCED_EXIT_BOUND)
            assert code == 130, bot.log_tail()
            assert any("received SIGTERM again: forcing exit" in line for line in bot.lines)
            # It closed what it had open (the backstop that ends a hung process was not needed).
            assert not any("after a forced stop: exiting now" in line for line in bot.lines), (
                bot.log_tail()
            )
        # Recorded, not finished: the next start runs it again (a cut turn is not an attempt).
        ((state, attempts),) = inbound_rows(tmp_path / "data")
        assert state == "received" and attempts <= 1
        async with running(config) as bot:
            await bot.ready()
            await fake.wait_for(lambda f: "ping-501-000" in replies(f, CHAT), TIMEOUT)
            assert await bot.stop() == 0
