"""The budget of event lines: the info line logged for each message, turn, reply and command.

Every event has its line, up to `log.event_lines_per_second` (0: no limit). Past that, on a
bot with hundreds of messages a second, the lines left out are counted, and one line reports
the count ten seconds after the first of them. Two reasons: the three lines of a message (its
intake, its turn, its reply) cost about a fifth of the CPU picobot spends on it; and journald
drops a service's lines past a rate (by default 10,000 in 30 s, a few times more with much free
disk), whatever their level: a flood of event lines would push out the warnings and errors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

DEFAULT_PER_SECOND = 200
REPORT_AFTER = 10.0  # seconds from the first line left out to the line that counts them

log = logging.getLogger("picobot")


class EventLines:
    """Event lines within `per_second` a second (0: every line); the rest counted."""

    def __init__(
        self,
        per_second: int = DEFAULT_PER_SECOND,
        *,
        clock: Callable[[], float] = time.monotonic,
        report_after: float = REPORT_AFTER,
    ) -> None:
        self.per_second = per_second
        self.report_after = report_after
        self.left_out = 0  # since the last report
        self._since = 0.0  # when the first of them was left out
        self._clock = clock
        self._second_ends = float("-inf")
        self._used = 0  # lines in the current second
        self._report: asyncio.TimerHandle | None = None
        self._report_loop: asyncio.AbstractEventLoop | None = None

    def take(self, logger: logging.Logger) -> bool:
        """Whether `logger` logs this event's info line: its level lets info through, and the
        budget of this second has room (then the line is counted against it)."""
        if not logger.isEnabledFor(logging.INFO):
            return False
        if not self.per_second:
            return True
        now = self._clock()
        if now >= self._second_ends:
            self._second_ends, self._used = now + 1.0, 0
        if self._used < self.per_second:
            self._used += 1
            return True
        if not self.left_out:
            self._since = now
        self.left_out += 1
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop to wait in: reported by the next `report()`
            return False
        if self._report is None or self._report_loop is not loop:  # (a loop closed: a new one)
            self._report = loop.call_later(self.report_after, self.report)
            self._report_loop = loop
        return False

    def report(self) -> None:
        """Log how many lines were left out since the last report, if any (also at shutdown)."""
        if self._report is not None:
            self._report.cancel()
            self._report = None
        if self.left_out:
            count, self.left_out = self.left_out, 0
            log.info(
                "%d event lines left out in %.0f s (more than log.event_lines_per_second: %d)",
                *(count, self._clock() - self._since, self.per_second),
            )


EVENT_LINES = EventLines()  # picobot's own; `setup_logging` sets its budget from the config
