"""The data_dir as one daemon's property: an exclusive lock, private modes, and a watch.

`DataDir.claim()` creates the folder (0700), takes an exclusive `flock` on ``picobot.lock``
inside it and writes our pid there; a second daemon on the same folder fails at once with the
first one's pid. The lock is released when the process ends, however it ends, so a stale
lock file never blocks a restart.

`DataDir.problem()` says what is wrong with the folder now: deleted or replaced under us (the
lock file we hold has no name any more), or the last write failed (disk full). The daemon asks
it for /readyz.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
from pathlib import Path

from picobot.core.errors import StartupError

__all__ = ["LOCK_NAME", "DataDir", "private_file"]

log = logging.getLogger("picobot.storage")

LOCK_NAME = "picobot.lock"
DIR_MODE = 0o700
FILE_MODE = 0o600


def private_file(path: Path) -> None:
    """Create `path` readable by its owner only, unless it exists (SQLite gives its -wal and
    -shm files the database file's mode, so this covers those too)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))


def storage_error_text(exc: BaseException) -> str:
    """A short reason for a failed write, without SQL or message text."""
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "")
        if name.startswith("SQLITE_FULL"):
            return "disk full"
        return name.lower().removeprefix("sqlite_") or type(exc).__name__
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return type(exc).__name__


class DataDir:
    """One daemon's claim on its data_dir."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._write_error: str | None = None
        self._reported: str | None = None

    def claim(self) -> None:
        """Create the folder (0700) and lock it.

        :raises StartupError: if the folder cannot be created or written, or another picobot
            holds it (the message names the folder and that process's pid).
        """
        try:
            self.path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            lock = self.path / LOCK_NAME
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            raise StartupError(
                f"data_dir {self.path}: {exc.strerror or exc}; make it writable by this user "
                "or set data_dir to another folder"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StartupError(
                f"data_dir {self.path} is in use by another picobot (pid {other}); "
                "stop it or give this one another data_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    # -- health -------------------------------------------------------------------------

    def wrote(self, exc: BaseException | None) -> None:
        """A write to the folder succeeded (None) or failed: then not ready until one
        succeeds again. Logged at once."""
        self._write_error = None if exc is None else storage_error_text(exc)
        if (self._write_error is not None) != (self._reported is not None):
            self.problem()

    def problem(self) -> str | None:
        """What is wrong with the folder now, or None. Logged once per distinct problem."""
        problem = self._check()
        if problem != self._reported:
            if problem is not None:
                log.error("data_dir %s: %s", self.path, problem)
            elif self._reported is not None:
                log.info("data_dir %s: writable again", self.path)
            self._reported = problem
        return problem

    def _check(self) -> str | None:
        if self._fd is not None:
            held = os.fstat(self._fd)
            try:
                named = os.stat(self.path / LOCK_NAME)
            except OSError:
                named = None
            if held.st_nlink == 0 or named is None or named.st_ino != held.st_ino:
                return (
                    "deleted or replaced while running; what is written now is lost: "
                    "restart picobot"
                )
        if self._write_error is not None:
            return f"writes fail ({self._write_error}); free space, then new messages go on"
        return None
