"""sd_notify: the protocol in-process, then `picobot run` talking to a fake systemd socket."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from picobot.runtime.sdnotify import Notifier
from tests.ops.helpers import Daemon, NotifySocket, write_config


@pytest.fixture
def notify(tmp_path: Path):
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


def test_no_socket_is_a_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready("ready") is False
    assert notifier.watchdog_interval is None


def test_sends_fields_in_one_datagram(notify: NotifySocket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": notify.path})
    assert notifier.ready("ready: web=connected")
    assert notify.expect("READY=1") == "READY=1\nSTATUS=ready: web=connected"
    notifier.reloading()
    message = notify.expect("RELOADING=1")
    usec = int(message.split("MONOTONIC_USEC=")[1].split("\n")[0])
    assert abs(usec / 1e6 - time.monotonic()) < 5
    notifier.close()


def test_abstract_socket() -> None:
    name = f"picobot-test-{os.getpid()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0" + name)
    server.settimeout(5)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.stopping()
        assert server.recv(100) == b"STOPPING=1\nSTATUS=stopping"
        notifier.close()
    finally:
        server.close()


def test_a_vanished_socket_is_not_an_error(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.ready() is False
    notifier.close()


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_honours_watchdog_pid(env: dict[str, str], interval) -> None:
    assert Notifier({"NOTIFY_SOCKET": "/x", **env}).watchdog_interval == interval


async def test_watchdog_pings_every_half_interval(notify: NotifySocket) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "100000"})
    task = asyncio.create_task(notifier.watchdog())
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(4):
        await loop.run_in_executor(None, notify.expect, "WATCHDOG=1", 2.0)
    elapsed = loop.time() - started
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    notifier.close()
    assert 0.1 <= elapsed < 1.5  # three half-intervals of 50 ms, give or take a loaded machine


def test_run_notifies_ready_watchdog_status_and_stopping(
    tmp_path: Path, notify: NotifySocket
) -> None:
    config = write_config(tmp_path / "config.yaml", tmp_path / "data")
    daemon = Daemon(config, {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "200000"})
    try:
        ready = notify.expect("READY=1")
        assert "STATUS=ready: no channels" in ready.split("\n")
        # The loop keeps pinging after startup.
        notify.expect("WATCHDOG=1")
        notify.expect("WATCHDOG=1")
        daemon.signal(signal.SIGTERM)
        stopping = notify.expect("STOPPING=1")
        assert stopping.startswith("STOPPING=1")
    finally:
        code = daemon.stop()
    assert code == 0, "\n".join(daemon.lines)
    assert any(line.endswith("stopped") for line in daemon.lines)


def test_run_without_notify_socket_still_runs(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", tmp_path / "data")
    daemon = Daemon(config)
    try:
        daemon.wait_for(r"ready: ")
    finally:
        assert daemon.stop() == 0
