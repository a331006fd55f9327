"""Logging: one line per event on stderr, journald-friendly, secrets redacted everywhere."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterable

from picobot.core.eventlines import DEFAULT_PER_SECOND, EVENT_LINES

# Token shapes redacted even when they are not in the config (e.g. echoed back in an error).
# Telegram's has no \b before it inside a URL (".../bot123:AA..."); Discord's is three
# base64url parts, the first one the bot's id.
_TOKEN_SHAPES = re.compile(
    r"(?<![0-9])\d{6,12}:[A-Za-z0-9_-]{30,}"
    r"|\b(?:xox[abposre]-[A-Za-z0-9-]{10,}|xapp-[A-Za-z0-9-]{10,}|sk-[A-Za-z0-9_-]{16,}"
    r"|[MNO][A-Za-z0-9_-]{20,30}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,})"
)
# Marks that every token shape holds (Telegram's colon, Slack's and OpenAI's prefixes,
# Discord's dots): a cheap test before the full pattern. Each is a literal, found fast; a
# message id (32 hex digits in every intake line) has none.
_COLON_RUN = re.compile(r":[A-Za-z0-9_-]{30}")
_DOTTED = re.compile(r"\.[A-Za-z0-9_-]{6}\.")
REDACTED = "[REDACTED]"
OWN_LOGGERS = ("picobot", "channels")


def may_hold_token(text: str) -> bool:
    """False only if `text` holds no token shape (the full pattern would find nothing)."""
    return (
        "xox" in text
        or "xapp-" in text
        or "sk-" in text
        or _COLON_RUN.search(text) is not None
        or _DOTTED.search(text) is not None
    )


class RedactingFilter(logging.Filter):
    """Replaces known secrets and token-shaped strings in the final message."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def add(self, secrets: Iterable[str]) -> None:
        known = set(self.secrets) | {s for s in secrets if s and len(s) >= 6}
        self.secrets = sorted(known, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if may_hold_token(text):
            return _TOKEN_SHAPES.sub(REDACTED, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        record.msg, record.args = self.redact(message), None
        return True


CONTENT_CHARS = 200  # of a message's text, in a log line (with `log.content: true`)


class ContentFilter(logging.Filter):
    """Appends a record's ``extra={"content": text}`` to its message when `enabled`
    (`log.content`); message text stays out of the logs otherwise."""

    def __init__(self, enabled: bool) -> None:
        super().__init__()
        self.enabled = enabled

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.enabled:
            return True
        content = getattr(record, "content", None)
        if isinstance(content, str):
            text = content if len(content) <= CONTENT_CHARS else content[:CONTENT_CHARS] + "…"
            record.msg, record.args = f"{record.getMessage()}: {json.dumps(text)}", None
        return True


class Formatter(logging.Formatter):
    """`logging.Formatter`, its time stamp made once a second rather than for every record."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None) -> None:
        super().__init__(fmt, datefmt)
        self._key: tuple[int, str | None] = (-1, None)
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if (second, datefmt) != self._key:
            self._key = (second, datefmt)
            self._stamp = time.strftime(datefmt or self.default_time_format, self.converter(second))
        if datefmt:
            return self._stamp
        return f"{self._stamp},{int(record.msecs):03d}"  # as logging's default_msec_format


class JsonFormatter(Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, ensure_ascii=False)


def setup_logging(
    level: str = "info",
    fmt: str = "text",
    secrets: Iterable[str] = (),
    content: bool = False,
    event_lines_per_second: int = DEFAULT_PER_SECOND,
) -> None:
    """Configure the root logger once (idempotent: replaces picobot's own handler).
    `content`: message text in the log lines (`log.content`), redacted like the rest;
    `event_lines_per_second`: the budget of event lines (`log.event_lines_per_second`)."""
    EVENT_LINES.per_second = event_lines_per_second
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name("picobot")
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    elif os.environ.get("JOURNAL_STREAM"):
        # journald stamps every line itself.
        handler.setFormatter(Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(
            Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
    if content:  # first: the redaction covers the text too
        handler.addFilter(ContentFilter(content))
    handler.addFilter(RedactingFilter(secrets))
    # No format here shows where a line was logged from, nor its thread or process: records
    # skip finding them out (the logging HOWTO's "Optimization"; a third of a record's cost).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "picobot"]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Libraries log at DEBUG what picobot must not (aiosqlite: SQL parameters, i.e. users'
    # messages; HTTP clients: request bodies). "debug" is picobot's own debug lines only;
    # "trace" lets every library's through too.
    if level == "trace":
        root.setLevel(logging.DEBUG)
        own = logging.DEBUG
    else:
        own = logging.getLevelName(level.upper())
        root.setLevel(max(logging.INFO, own))
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(own)
    # Libraries log every request at INFO; keep the journal to events.
    for noisy in (
        "httpx",
        "httpx2",
        "telegram",
        "discord",
        "slack_bolt",
        "slack_sdk",
        "aiohttp.access",
    ):
        logging.getLogger(noisy).setLevel(
            logging.DEBUG if level == "trace" else max(logging.WARNING, root.level)
        )


def add_secrets(secrets: Iterable[str]) -> None:
    """Teach picobot's handler new secrets (a reload brought a new token); old ones stay."""
    secrets = list(secrets)
    for handler in logging.getLogger().handlers:
        if handler.get_name() == "picobot":
            for f in handler.filters:
                if isinstance(f, RedactingFilter):
                    f.add(secrets)
