"""The budget of event lines: so many a second, the rest counted and reported."""

from __future__ import annotations

import asyncio
import logging

import pytest

from picobot.core.eventlines import EventLines

INFO = logging.getLogger("picobot.test.events")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def info_level():
    INFO.setLevel(logging.INFO)
    yield
    INFO.setLevel(logging.NOTSET)


def test_lines_within_the_budget_pass_and_the_rest_are_counted() -> None:
    clock = Clock()
    lines = EventLines(3, clock=clock)
    assert [lines.take(INFO) for _ in range(5)] == [True, True, True, False, False]
    assert lines.left_out == 2
    clock.now += 0.999  # the same second
    assert not lines.take(INFO)
    clock.now += 0.001  # the next one: a new budget
    assert [lines.take(INFO) for _ in range(4)] == [True, True, True, False]
    assert lines.left_out == 4


def test_no_limit_with_zero() -> None:
    lines = EventLines(0, clock=Clock())
    assert all(lines.take(INFO) for _ in range(10_000))
    assert lines.left_out == 0


def test_a_level_above_info_logs_no_line_and_spends_no_budget() -> None:
    lines = EventLines(1, clock=Clock())
    INFO.setLevel(logging.WARNING)
    assert not lines.take(INFO)
    INFO.setLevel(logging.INFO)
    assert lines.take(INFO)  # the budget's one line is still there
    assert lines.left_out == 0


async def test_the_lines_left_out_are_reported_once_after_a_while(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    lines = EventLines(2, clock=clock, report_after=0.01)
    reported = asyncio.Event()

    class Heard(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "left out" in record.getMessage():
                reported.set()

    heard = Heard()
    logging.getLogger("picobot").addHandler(heard)
    try:
        with caplog.at_level(logging.INFO, logger="picobot"):
            for _ in range(7):
                lines.take(INFO)
            clock.now += 4
            await asyncio.wait_for(reported.wait(), 5)
            lines.report()  # nothing more to report: no second line
    finally:
        logging.getLogger("picobot").removeHandler(heard)
    reports = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert reports == ["5 event lines left out in 4 s (more than log.event_lines_per_second: 2)"]
    assert lines.left_out == 0


def test_outside_an_event_loop_the_count_waits_for_report(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lines = EventLines(1, clock=Clock())
    with caplog.at_level(logging.INFO, logger="picobot"):
        assert [lines.take(INFO) for _ in range(3)] == [True, False, False]
        assert not [r for r in caplog.records if "left out" in r.getMessage()]
        lines.report()
    assert "2 event lines left out" in caplog.records[-1].getMessage()
