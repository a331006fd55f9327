"""The backstop of a forced stop (a second SIGTERM/SIGINT).

The daemon cancels its main task, which still closes the databases and ends child processes
on the way out (`Daemon.force_close`); if anything hangs all the same (a worker thread, the
default executor), `exit_soon` ends the process anyway. What SQLite committed stays: WAL
with synchronous=NORMAL survives a process exit, and a message whose turn did not finish is
run again at the next start.
"""

from __future__ import annotations

import logging
import os
import threading

__all__ = ["EXIT_FORCED", "FORCED_EXIT_SECONDS", "exit_soon"]

log = logging.getLogger("picobot")

FORCED_EXIT_SECONDS = 5.0
EXIT_FORCED = 130  # as for Ctrl-C


def exit_soon(seconds: float = FORCED_EXIT_SECONDS, code: int = EXIT_FORCED) -> threading.Timer:
    """End the process with `code` after `seconds` unless it ended before (a daemon thread)."""

    def now() -> None:
        log.warning("still running %.0f s after a forced stop: exiting now", seconds)
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(code)

    timer = threading.Timer(seconds, now)
    timer.daemon = True
    timer.start()
    return timer
