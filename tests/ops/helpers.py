"""A picobot daemon in a subprocess, and a fake systemd notify socket, for the ops tests.

Everything waits for an event (a log line, a datagram) with a timeout; nothing sleeps.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 20.0
# Syntactically a Telegram token; the channel points at a closed port, so it fails fast offline.
TG_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawTOKENX"


def write_config(path: Path, data_dir: Path, **channels: dict) -> Path:
    config = {
        "data_dir": str(data_dir),
        "http": {"host": "127.0.0.1", "port": 0},
        "channels": {"web": {"enabled": False}, **channels},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def telegram(**overrides: object) -> dict:
    return {
        "enabled": True,
        "token": TG_TOKEN,
        "base_url": "http://127.0.0.1:9/bot",  # discard port: connection refused
        "allow_from": ["*"],
        **overrides,
    }


class NotifySocket:
    """The receiving end of $NOTIFY_SOCKET, as systemd would bind it."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.received: list[str] = []

    def expect(self, field: str, timeout: float = TIMEOUT) -> str:
        """The next datagram containing the line `field` (e.g. "READY=1"); skips others."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                message = self.sock.recv(4096).decode()
            except TimeoutError:
                break
            self.received.append(message)
            if field in message.split("\n"):
                return message
        raise AssertionError(f"no {field} within {timeout} s; got {self.received[-5:]}")

    def close(self) -> None:
        self.sock.close()


class Daemon:
    """`python -m picobot run --config PATH` with its stderr collected line by line."""

    def __init__(
        self,
        config: Path,
        env: dict[str, str] | None = None,
        *,
        fd_limit: tuple[int, int] | None = None,
    ) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._port = 0
        self._terminated = False
        self._port_known = threading.Event()
        environ = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET",)}
        environ.pop("JOURNAL_STREAM", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "picobot", "run", "--config", str(config)],
            cwd=ROOT,
            env={**environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=None if fd_limit is None else lambda: _limit_fds(fd_limit),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if match := re.search(r"http server on http://[^ ]+:(\d+)$", line):
                self._port = int(match.group(1))
                self._port_known.set()
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        """The first line from now on matching the regex `pattern`."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"exited before {pattern!r}:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if match := regex.search(line):
                return match
        raise AssertionError(f"no {pattern!r} within {timeout} s:\n" + "\n".join(self.lines))

    @property
    def port(self) -> int:
        """The HTTP port it bound (the configs ask for port 0)."""
        assert self._port_known.wait(TIMEOUT), "no 'http server on' line:\n" + "\n".join(self.lines)
        return self._port

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)
        self._terminated |= signum == signal.SIGTERM

    def stop(self, timeout: float = TIMEOUT) -> int:
        """SIGTERM (once: a second one forces exit) and the exit code."""
        if self.proc.poll() is None and not self._terminated:
            self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(5)
            while not self._queue.empty():
                if (line := self._queue.get_nowait()) is not None:
                    self.lines.append(line)
            if self.proc.stderr is not None:
                self.proc.stderr.close()


def _limit_fds(limit: tuple[int, int]) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, limit)


def picobot(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "picobot", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
