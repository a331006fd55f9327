"""Shared test setup."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.cluster.redis_server import RedisServer, server_in
from tests.outboxes import Outboxes, RedisOutboxes, SqliteOutboxes

# python-telegram-bot warns (an error under filterwarnings=error) when RetryAfter.retry_after is
# read as an int; with this opt-in it is a timedelta, the behaviour of its next major version.
os.environ.setdefault("PTB_TIMEDELTA", "1")

# CI runs the same number of examples, derandomized: a red CI is then reproducible, and new
# counterexamples are hunted locally (random by default) and pinned with @example.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session (started on first use; skips without one)."""
    with server_in(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(params=["sqlite", "redis"])
def outboxes(request: pytest.FixtureRequest, tmp_path: Path) -> Outboxes:
    """Each outbox backend in turn (tests/outboxes.py)."""
    if request.param == "sqlite":
        return SqliteOutboxes(tmp_path)
    server: RedisServer = request.getfixturevalue("redis_server")
    return RedisOutboxes(server.url)
