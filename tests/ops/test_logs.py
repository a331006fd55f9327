"""Logs: one line per event, no timestamps under journald, JSON on request, secrets redacted."""

from __future__ import annotations

import io
import json
import logging
import random
import re
import signal
import string
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from picobot.runtime import logs
from picobot.runtime.logs import REDACTED, add_secrets, setup_logging
from tests.ops.helpers import TIMEOUT, Daemon, write_config

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawTOKENX"
API_KEY = "plain-configured-api-key-42"  # no recognisable shape: only the config knows it
SHAPED = {
    "telegram in a URL": "https://api.telegram.org/bot987654321:AAE3xYzAbCdEfGhIjKlMnOpQrStUvWxYz12/getMe",
    "slack bot": "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOp",
    "slack app": "xapp-1-A0123456789-1234567890123-abcdef0123456789",
    "openai": "sk-proj-AbCdEfGhIjKlMnOpQrSt",
    "discord": "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GaBcDe.AbCdEfGhIjKlMnOpQrStUvWxYz0123",
}


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch):
    """picobot's handler writes into this buffer; the root logger is restored afterwards.

    (pytest re-installs its own sys.stderr for each test phase, so the stream is swapped in
    when the handler is made, by `setup`.)
    """
    buffer = io.StringIO()
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    # Other tests may have left a level on "picobot"; this logger must not inherit it.
    ours = logging.getLogger("picobot.test")
    ours.setLevel(logging.DEBUG)
    yield buffer
    ours.setLevel(logging.NOTSET)
    root.handlers[:] = handlers
    root.setLevel(level)


def setup(buffer: io.StringIO, fmt: str, secrets: list[str]) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "stderr", buffer)
        setup_logging("info", fmt, secrets)


def lines(buffer: io.StringIO) -> list[str]:
    return buffer.getvalue().splitlines()


def test_configured_secrets_are_redacted_in_messages_and_exceptions(stderr) -> None:
    setup(stderr, "text", [TOKEN, API_KEY])
    log = logging.getLogger("picobot.test")
    log.info("connecting with %s and key=%s", TOKEN, API_KEY)
    try:
        raise RuntimeError(f"401 for token {TOKEN} (key {API_KEY})")
    except RuntimeError:
        log.exception("request failed")
    out = stderr.getvalue()
    assert TOKEN not in out and API_KEY not in out
    assert "AAHdqTcv" not in out  # no fragment either
    assert f"connecting with {REDACTED} and key={REDACTED}" in out
    assert f"RuntimeError: 401 for token {REDACTED} (key {REDACTED})" in out


@pytest.mark.parametrize("name", list(SHAPED))
def test_token_shaped_strings_are_redacted_without_being_configured(stderr, name: str) -> None:
    setup(stderr, "text", [])
    logging.getLogger("picobot.test").warning("echoed back: %s!", SHAPED[name])
    (line,) = lines(stderr)
    assert SHAPED[name] not in line
    assert REDACTED in line


def test_ordinary_text_is_left_alone(stderr) -> None:
    setup(stderr, "text", [TOKEN])
    text = "telegram:-1001234567 session 42 at 12:34:56, id 123456789 ok"
    logging.getLogger("picobot.test").info(text)
    assert lines(stderr)[0].endswith(text)


def test_the_quick_test_lets_every_token_shape_through() -> None:
    # `may_hold_token` skips the full pattern: it must never skip a text the pattern matches.
    rng = random.Random(17)
    pieces = ["xoxb-", "xapp-", "sk-", "M", "N", ".", ":", "/bot", " ", "-", "_"]
    runs = string.ascii_letters + string.digits

    def piece() -> str:
        if rng.random() < 0.5:
            return rng.choice(pieces)
        return "".join(
            rng.choices(runs if rng.random() < 0.7 else string.digits, k=rng.randint(1, 40))
        )

    texts = [
        *SHAPED.values(),
        *(("".join(piece() for _ in range(rng.randint(1, 8)))) for _ in range(20_000)),
    ]
    matching = [t for t in texts if logs._TOKEN_SHAPES.search(t)]
    assert len(matching) > 500  # the generator does make tokens
    assert all(logs.may_hold_token(t) for t in matching)
    # ...and it does skip an intake line, whose 32-hex message id looks like a token's run.
    assert not logs.may_hold_token(
        "message 3f9a1c2b4d5e6f700000000000000001 in web:c1 from u1 (9 chars)"
    )


def test_secrets_added_on_reload_are_redacted(stderr) -> None:
    setup(stderr, "text", [TOKEN])
    add_secrets(["brand-new-secret-value"])
    logging.getLogger("picobot.test").info("new %s old %s", "brand-new-secret-value", TOKEN)
    assert lines(stderr)[0].endswith(f"new {REDACTED} old {REDACTED}")


def test_no_timestamps_under_journald(stderr, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    setup(stderr, "text", [])
    logging.getLogger("picobot.test").info("hello")
    assert lines(stderr) == ["INFO picobot.test: hello"]


def test_timestamps_on_a_terminal(stderr) -> None:
    setup(stderr, "text", [])
    logging.getLogger("picobot.test").info("hello")
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO picobot.test: hello", lines(stderr)[0])


def test_json_format_is_one_redacted_object_per_line(stderr) -> None:
    setup(stderr, "json", [TOKEN])
    log = logging.getLogger("picobot.test")
    log.info("multi\nline %s", TOKEN)
    try:
        raise ValueError(TOKEN)
    except ValueError:
        log.exception("boom")
    first, second = (json.loads(line) for line in lines(stderr))
    assert first["message"] == f"multi\nline {REDACTED}"
    assert first["level"] == "info" and first["logger"] == "picobot.test"
    assert second["exception"].endswith(f"ValueError: {REDACTED}")
    assert TOKEN not in stderr.getvalue()


def test_the_daemon_logs_json_without_its_token(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "config.yaml",
        tmp_path / "data",
        telegram={"enabled": True, "token": TOKEN, "base_url": "http://127.0.0.1:9/bot"},
    )
    config.write_text(config.read_text() + yaml.safe_dump({"log": {"format": "json"}}))
    daemon = Daemon(config, {"JOURNAL_STREAM": "8:12345"})
    try:
        daemon.wait_for(r'"message": "ready: telegram=failed"')
    finally:
        assert daemon.stop() == 0
    records = [json.loads(line) for line in daemon.lines]  # every line is one JSON object
    assert any(r["message"].startswith("channel telegram failed to start") for r in records)
    assert not any(TOKEN.split(":")[1] in line for line in daemon.lines)


def test_the_daemon_logs_without_timestamps_under_journald(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", tmp_path / "data")
    daemon = Daemon(config, {"JOURNAL_STREAM": "8:12345"})
    try:
        daemon.wait_for(r"ready: ")
    finally:
        assert daemon.stop() == 0
    assert daemon.lines[0].startswith("INFO picobot: starting picobot: ")
    assert all(re.match(r"(DEBUG|INFO|WARNING|ERROR|CRITICAL) ", line) for line in daemon.lines)


@pytest.mark.parametrize(("level", "shown"), [("debug", False), ("trace", True)])
async def test_library_debug_lines_only_at_trace(
    stderr, tmp_path: Path, level: str, shown: bool
) -> None:
    # aiosqlite logs each statement's parameters at DEBUG: a user's message, here.
    import aiosqlite

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "stderr", stderr)
        setup_logging(level, "text", [])
    try:
        logging.getLogger("picobot.test").debug("our own debug line")
        async with aiosqlite.connect(tmp_path / "x.db") as db:
            await db.execute("SELECT ?", ("a private message",))
    finally:
        for name in ("picobot", "channels"):
            logging.getLogger(name).setLevel(logging.NOTSET)
    out = stderr.getvalue()
    assert "our own debug line" in out
    assert ("a private message" in out) is shown


@pytest.mark.parametrize("content", [False, True])
def test_message_text_is_logged_only_with_log_content(stderr, content: bool) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "stderr", stderr)
        setup_logging("info", "text", [API_KEY], content)
    text = f"my secret plans (key {API_KEY})"
    logging.getLogger("picobot.test").info("message in %s", "web:a", extra={"content": text})
    (line,) = lines(stderr)
    if content:
        assert line.endswith(f'message in web:a: "my secret plans (key {REDACTED})"')
    else:
        assert line.endswith("message in web:a") and "secret plans" not in line


def post(port: int, text: str, session: str = "logs") -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/messages",
        data=json.dumps({"text": text, "session": session}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 202


def test_the_daemon_logs_one_line_per_event_and_no_message_text(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", web={"enabled": True})
    config.write_text(config.read_text() + yaml.safe_dump({"dispatch": {"drain_timeout": 30}}))
    daemon = Daemon(config, {"PICOBOT_DEMO_DELAY": "0.02"})
    try:
        daemon.wait_for(r"ready: ")
        post(daemon.port, "/status")
        daemon.wait_for(r"INFO picobot\.agent: /status in web:logs$")
        post(daemon.port, "a long and private question")
        daemon.wait_for(r"INFO picobot\.intake: message \w+ in web:logs from web \(27 chars\)$")
        # Ctrl-C mid-reply says what it is waiting for.
        daemon.signal(signal.SIGINT)
        daemon.wait_for(
            r"received SIGINT: finishing 1 turn\(s\) \(up to 30 s\); Ctrl-C again to force$"
        )
        daemon.wait_for(
            r"turn finished in web:logs: \d+\.\d s, [1-9]\d* prompt \+ [1-9]\d* completion tokens$"
        )
        daemon.wait_for(r"delivered web:logs \(1 chunk, \d+ ms\)$")
        daemon.wait_for(r"INFO picobot: stopped$")
        assert daemon.proc.wait(TIMEOUT) == 0
    finally:
        assert daemon.stop() == 0
    assert not any("private question" in line for line in daemon.lines)


def test_event_lines_past_the_budget_are_counted_not_lost(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", web={"enabled": True})
    extra = {"dispatch": {"drain_timeout": 30}, "log": {"event_lines_per_second": 1}}
    config.write_text(config.read_text() + yaml.safe_dump(extra))
    daemon = Daemon(config, {"PICOBOT_DEMO_DELAY": "0.01"})
    try:
        daemon.wait_for(r"ready: ")
        for n in range(5):
            post(daemon.port, f"question {n}", session=f"s{n}")
        daemon.signal(signal.SIGINT)  # finishes the turns and delivers their replies
        daemon.wait_for(r"INFO picobot: stopped$")
        assert daemon.proc.wait(TIMEOUT) == 0
    finally:
        daemon.stop()
    event = re.compile(r"(message \w+ in web:s\d|turn finished in web:s\d|delivered web:s\d)")
    logged = sum(1 for line in daemon.lines if event.search(line))
    reports = [re.search(r"(\d+) event lines left out in \d+ s", line) for line in daemon.lines]
    left_out = [int(m[1]) for m in reports if m]
    # Each message has its three events: every one either logged or counted.
    assert logged + sum(left_out) == 15
    assert left_out  # five messages posted at once: more than one line in a second


def test_a_second_ctrl_c_forces_exit_during_a_turn(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", tmp_path / "data", web={"enabled": True})
    daemon = Daemon(config, {"PICOBOT_DEMO_DELAY": "0.1"})  # a ~15 s reply
    try:
        daemon.wait_for(r"ready: ")
        post(daemon.port, "something long")
        daemon.wait_for(r"message \w+ in web:logs")
        daemon.signal(signal.SIGINT)
        daemon.wait_for(r"finishing 1 turn\(s\)")
        daemon.signal(signal.SIGINT)
        daemon.wait_for(r"received SIGINT again: forcing exit$")
        # The databases are closed even so: their threads do not keep the process alive.
        assert daemon.proc.wait(TIMEOUT) == 130
    finally:
        daemon.stop()


def test_time_stamps_made_once_a_second_match_loggings_own() -> None:
    from picobot.runtime.logs import Formatter

    ours, theirs = Formatter(), logging.Formatter()
    for created in (1764511962.123, 1764511962.987, 1764511963.004):  # two in the same second
        record = logging.makeLogRecord({"msg": "x", "created": created})
        record.msecs = (created - int(created)) * 1000
        assert ours.formatTime(record) == theirs.formatTime(record)
        assert ours.formatTime(record, "%H:%M:%S") == theirs.formatTime(record, "%H:%M:%S")
