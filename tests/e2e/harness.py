"""`picobot run` in a subprocess against a FakeTelegram in the test's event loop.

Everything waits on an event (a log line, an API call seen by the fake) with a timeout; nothing
sleeps. The daemon's stderr is read by a task of the test's loop, so the fake keeps answering
while the test waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml

from tests.fakes.fake_telegram import FakeTelegram

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0
DEMO_DELAY = "0.01"  # seconds per word: a demo turn takes ~0.6 s instead of ~2 s
TOKEN = re.compile(r"ping-\d+-\d{3}")  # fixed width: no token is a prefix of another
DEMO_END = "llama.cpp)."  # the demo reply's last words: a reply that has them is complete


class FaultyTelegram(FakeTelegram):
    """FakeTelegram with random faults on sendMessage (seeded) and an outage switch.

    Faults queued with `fail_next` still come first; then, while `down`, every sendMessage
    answers 500; else each kind in `random_faults` hits with its probability.
    """

    def __init__(self, *, seed: int = 9) -> None:
        super().__init__()
        self.random_faults: dict[str, float] = {}
        self.down = False
        self._rng = random.Random(seed)

    def _take_fault(self, method: str) -> str | None:
        fault = super()._take_fault(method)
        if fault is not None or method.lower() != "sendmessage":
            return fault
        if self.down:
            return "500"
        draw, edge = self._rng.random(), 0.0
        for kind, probability in self.random_faults.items():
            edge += probability
            if draw < edge:
                return kind
        return None

    def send_attempts(self, chat_id: int) -> list[Any]:
        return [
            c
            for c in self.calls
            if c.method == "sendMessage" and c.params.get("chat_id") == chat_id
        ]


def write_config(
    tmp: Path, fake: FakeTelegram, *, streaming: bool = False, drain_timeout: float = 10
) -> Path:
    config = fake.picobot_config(
        tmp / "data",
        inbound_rate=1000,  # bursts from one sender are the point here
        placeholder={"enabled": False},
        streaming={"enabled": streaming},
    )
    config |= {
        "llm": {"provider": "demo"},
        "agent": {"max_parallel_turns": 8},
        "dispatch": {"max_backoff": 1, "drain_timeout": drain_timeout},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class Picobot:
    """One `python -m picobot run --config PATH` process; its stderr kept line by line."""

    def __init__(self, config: Path, demo_delay: str = DEMO_DELAY) -> None:
        self.config = config
        self.demo_delay = demo_delay
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._eof = False

    async def start(self) -> None:
        env = {**os.environ, "PICOBOT_DEMO_DELAY": self.demo_delay}
        for name in ("NOTIFY_SOCKET", "JOURNAL_STREAM", "PICOBOT_CONFIG"):
            env.pop(name, None)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "picobot",
            "run",
            "--config",
            str(self.config),
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))
            self._notify()
        self._eof = True
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_line(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        """The first line so far (or from now on) matching the regex `pattern`."""
        regex = re.compile(pattern)
        seen = 0
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for line in self.lines[seen:]:
                        if match := regex.search(line):
                            return match
                    seen = len(self.lines)
                    if self._eof:
                        raise AssertionError(f"exited before {pattern!r}:\n{self.log_tail()}")
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {pattern!r} within {timeout} s:\n{self.log_tail()}") from None

    async def ready(self) -> int:
        """Wait for the " ready:" line; the HTTP port it bound."""
        port = int((await self.wait_line(r"http server on http://[^ ]+:(\d+)"))[1])
        await self.wait_line(r" ready: telegram=connected")
        return port

    async def stop(self, signum: int = signal.SIGTERM, timeout: float = TIMEOUT) -> int:
        """Send `signum` and wait for the exit code."""
        assert self.proc is not None and self._reader is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signum)
        try:
            async with asyncio.timeout(timeout):
                code = await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(
                f"no exit {timeout} s after {signum}:\n{self.log_tail()}"
            ) from None
        finally:
            await self._reader
        return code

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.lines[-n:])


@contextlib.asynccontextmanager
async def running(config: Path, demo_delay: str = DEMO_DELAY) -> AsyncIterator[Picobot]:
    """A started daemon, killed on the way out if the test left it running."""
    bot = Picobot(config, demo_delay)
    await bot.start()
    try:
        yield bot
    finally:
        if bot.proc is not None and bot.proc.returncode is None:
            await bot.stop(signal.SIGKILL)


async def status(tmp: Path, port: int) -> str:
    """`picobot status` against the daemon on `port`; its stdout."""
    client = tmp / f"client-{port}.yaml"
    client.write_text(yaml.safe_dump({"http": {"host": "127.0.0.1", "port": port}}))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "picobot",
        "status",
        "--config",
        str(client),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 0, err.decode()
    return out.decode()


def outbox_counts(text: str) -> tuple[int, int]:
    """(pending, dead) from `picobot status` output."""
    match = re.search(r"outbox: (\d+) pending, (\d+) dead letters", text)
    assert match, text
    return int(match[1]), int(match[2])


def accepted(data_dir: Path) -> set[str]:
    """Texts of the inbound messages the daemon recorded (read after it exited)."""
    with contextlib.closing(sqlite3.connect(data_dir / "outbox.db")) as db:
        rows = db.execute("SELECT data FROM inbound").fetchall()
    return {json.loads(data)["text"] for (data,) in rows}


def replies(fake: FakeTelegram, chat_id: int) -> list[str]:
    """Tokens answered by complete demo replies in `chat_id`, in the order they were sent."""
    return [
        token
        for m in fake.chat_log(chat_id)
        if "You said:" in m.text and m.text.rstrip().endswith(DEMO_END)
        for token in TOKEN.findall(m.text)
    ]


def partials(fake: FakeTelegram, chat_id: int) -> list[str]:
    """Bot messages in `chat_id` quoting a token that are not a complete reply (e.g. a turn
    cut by shutdown ends with "⏹ Stopped.")."""
    return [
        m.text
        for m in fake.chat_log(chat_id)
        if TOKEN.search(m.text) and not m.text.rstrip().endswith(DEMO_END)
    ]


def assert_in_order(fake: FakeTelegram, chat_id: int, texts: list[str]) -> None:
    """The replies in `chat_id` answer its messages in order, none twice, the last one surely.

    Messages that arrive together in one chat may be answered together (steering: the model
    sees them in one turn, and the demo model echoes only the newest), so an earlier message
    may have no echo of its own; the newest always has one.
    """
    mine = [t for t in texts if t.startswith(f"ping-{chat_id}-")]
    got = replies(fake, chat_id)
    assert got == sorted(set(got)), (chat_id, got)  # in order, no duplicates
    assert set(got) <= set(mine) and got[-1:] == mine[-1:], (chat_id, got, mine)


# The states of an inbound message that never runs again: "answered" (a reply to it was
# delivered; its turn's end adds nothing), "done" (its turn ended, or it was absorbed into one).
ENDED = frozenset(("answered", "done"))


def finished_turns(data_dir: Path) -> dict[str, str]:
    """Inbound text -> state (see `ENDED`)."""
    with contextlib.closing(sqlite3.connect(data_dir / "outbox.db")) as db:
        rows = db.execute("SELECT data, state FROM inbound").fetchall()
    return {json.loads(data)["text"]: state for data, state in rows}


def push_burst(fake: FakeTelegram, chats: list[int], per_chat: int) -> list[str]:
    """`per_chat` messages to each chat, interleaved; their texts (unique tokens)."""
    texts = []
    for i in range(per_chat):
        for chat in chats:
            text = f"ping-{chat}-{i:03d}"
            fake.user_message(chat, text)
            texts.append(text)
    return texts


async def wait_answered(
    fake: FakeTelegram, bot: Picobot, chats: list[int], texts: set[str], timeout: float = TIMEOUT
) -> None:
    """Wait until every text in `texts` has a complete reply; else fail naming the missing."""

    def all_answered(f: FakeTelegram) -> bool:
        return texts <= {t for chat in chats for t in replies(f, chat)}

    try:
        await fake.wait_for(all_answered, timeout)
    except TimeoutError:
        missing = sorted(texts - {t for chat in chats for t in replies(fake, chat)})
        logs = {chat: [m.text[-40:] for m in fake.chat_log(chat)] for chat in chats}
        raise AssertionError(
            f"no reply to {missing} within {timeout} s\nchat logs: {logs}\n{bot.log_tail()}"
        ) from None
