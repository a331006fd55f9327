"""A real `redis-server` for tests: started on a free port in a temporary folder, stopped by
pid. Readiness is the server's own "Ready to accept connections" line, not a sleep."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import pytest

READY = "Ready to accept connections"
START_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_binary() -> str | None:
    return shutil.which("redis-server")


class RedisServer:
    """`redis-server --port <free> --save "" --dir <dir>`; `start()` / `stop()` can repeat
    (the port stays), so tests can take Redis down and bring it back."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = redis_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--loglevel",
                "notice",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._wait_ready(self.process.stdout)

    def _wait_ready(self, out: IO[str] | None) -> None:
        assert out is not None and self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        seen = []
        for line in out:  # blocks on the server's output, line by line
            seen.append(line)
            if READY in line:
                return
            if time.monotonic() > deadline:
                break
        self.stop()
        raise RuntimeError("redis-server did not start:\n" + "".join(seen[-10:]))

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            with contextlib.suppress(OSError):
                process.stdout.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def server_in(folder: Path) -> Iterator[RedisServer]:
    """A server of its own in `folder`, stopped on exit; skips the test without redis-server."""
    if redis_binary() is None:
        pytest.skip("redis-server is not installed (make test installs Debian's redis-server)")
    with RedisServer(folder) as server:
        yield server
