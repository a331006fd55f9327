"""systemd's notify protocol: one datagram per state change to ``$NOTIFY_SOCKET``.

A few lines over a Unix datagram socket instead of a dependency (see sd_notify(3)). Without
``$NOTIFY_SOCKET`` (not started by systemd, or ``Type=simple``) every call is a no-op.

    READY=1            startup finished: every enabled channel was started
    RELOADING=1        a SIGHUP reload began (with MONOTONIC_USEC=, as systemd ≥ 253 expects)
    STOPPING=1         shutdown began
    WATCHDOG=1         the event loop is alive; sent every WATCHDOG_USEC / 2 by `watchdog()`
    STATUS=...         one line for `systemctl status`, e.g. "ready: telegram=connected"
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("picobot.sdnotify")


class Notifier:
    """Sends notify messages; errors are logged once and never raised (systemd is optional)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # "@name" is an abstract socket: the kernel wants a leading NUL byte instead.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_interval = _watchdog_interval(env)
        self._socket: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields in one datagram; True if it was sent."""
        if not self.address:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            if not self._warned:  # e.g. the socket is gone; one line, not one per ping
                log.warning("sd_notify to %s failed: %s", self.address.lstrip("\0"), exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading")

    def stopping(self, status: str = "stopping") -> bool:
        return self.notify("STOPPING=1", f"STATUS={status}")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    async def watchdog(self) -> None:
        """Ping ``WATCHDOG=1`` from the event loop every half interval, forever.

        A wedged loop stops pinging, so systemd kills and restarts us (``WatchdogSec=``).
        Returns at once when the watchdog is not enabled for this process.
        """
        if not self.enabled or self.watchdog_interval is None:
            return
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_interval / 2)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """WATCHDOG_USEC in seconds, if it is meant for this process (WATCHDOG_PID, when set)."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 1_000_000
