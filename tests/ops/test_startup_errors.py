"""Why picobot cannot start, in one line naming the file or address, and exit code 2."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.ops.helpers import ROOT, Daemon, NotifySocket, picobot, telegram, write_config


def run_once(config: Path) -> subprocess.CompletedProcess[str]:
    """`picobot run` expected to fail at startup (a daemon that starts is a test failure)."""
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM")}
    return subprocess.run(
        [sys.executable, "-m", "picobot", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_a_second_daemon_on_the_same_data_dir_exits_2_naming_the_first(tmp_path: Path) -> None:
    notify = NotifySocket(tmp_path / "notify.sock")
    data = tmp_path / "data"
    config = write_config(tmp_path / "config.yaml", data, telegram=telegram())
    first = Daemon(config, {"NOTIFY_SOCKET": notify.path})
    try:
        notify.expect("READY=1")
        second = run_once(config)
        assert second.returncode == 2, second.stderr
        line = last_line(second)
        assert line == (
            f"picobot: data_dir {data} is in use by another picobot (pid {first.proc.pid}); "
            "stop it or give this one another data_dir"
        )
        assert first.proc.poll() is None  # the first one runs on
    finally:
        assert first.stop() == 0
        notify.close()
    again = Daemon(config)  # the lock went with the process
    again.wait_for(r" ready: ")
    assert again.stop() == 0


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` unwritable for this user, even root (made immutable then)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield
        folder.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root without chattr: cannot make a folder read-only")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_an_unwritable_data_dir_names_the_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    config = write_config(tmp_path / "config.yaml", data)
    with read_only(data):
        result = run_once(config)
    assert result.returncode == 2, result.stderr
    line = last_line(result)
    assert line.startswith(f"picobot: data_dir {data}: "), line
    assert line.endswith("make it writable by this user or set data_dir to another folder")


def test_an_outbox_that_is_not_a_database_is_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "outbox.db").write_bytes(b"this is not SQLite " * 100)
    result = run_once(write_config(tmp_path / "config.yaml", data))
    assert result.returncode == 2, result.stderr
    line = last_line(result)
    assert line.startswith(f"picobot: {data / 'outbox.db'} is not a usable SQLite database"), line
    assert "move it away" in line


def test_a_port_in_use_names_the_address(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path / "config.yaml", tmp_path / "data")
        data = yaml.safe_load(config.read_text())
        config.write_text(yaml.safe_dump(data | {"http": {"host": "127.0.0.1", "port": port}}))
        result = run_once(config)
    assert result.returncode == 2, result.stderr
    line = last_line(result)
    assert line.startswith(f"picobot: cannot listen on 127.0.0.1:{port}: Address already in use")


@pytest.mark.parametrize("command", ["check", "run", "status"])
def test_a_config_file_that_is_not_utf8_is_named(tmp_path: Path, command: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes("agent:\n  system_prompt: caf\xe9\n".encode("latin-1"))
    result = picobot(command, "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert last_line(result) == (
        f"picobot: config error: {config} is not UTF-8 text (byte 27); save it as UTF-8"
    )


def test_data_dir_files_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    daemon = Daemon(write_config(tmp_path / "config.yaml", data))
    daemon.wait_for(r" ready: ")
    assert daemon.stop() == 0
    assert data.stat().st_mode & 0o777 == 0o700
    assert {"outbox.db", "sessions.db", "picobot.lock"} <= {p.name for p in data.iterdir()}
    for path in data.rglob("*"):
        assert path.stat().st_mode & 0o777 == (0o700 if path.is_dir() else 0o600), path
