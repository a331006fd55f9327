"""Slash command parsing and the steering queue: pure, no event loop."""

from __future__ import annotations

import pytest

from picobot.agent.commands import Command, parse_command
from picobot.agent.steering import Queued, SteeringQueue


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/help", Command("help")),
        ("/start", Command("help")),
        ("/new", Command("new")),
        ("/reset", Command("new")),
        ("  /STOP  ", Command("stop")),
        ("/status@picobot_bot", Command("status")),  # Telegram groups
        ("/new@picobot_bot please", Command("new", "please")),
        ("/unknown", None),  # goes to the model as text
        ("/usr/bin/env", None),
        ("hello /stop", None),
        ("", None),
    ],
)
def test_parse_command(text: str, expected: Command | None) -> None:
    assert parse_command(text) == expected


def test_one_at_a_time_hands_out_one_message_per_poll() -> None:
    queue = SteeringQueue("one-at-a-time")
    for text in "abc":
        assert queue.push(Queued(text))

    assert [queue.take(), queue.take(), queue.take(), queue.take()] == [
        [Queued("a")],
        [Queued("b")],
        [Queued("c")],
        [],
    ]


def test_all_mode_hands_out_everything() -> None:
    queue = SteeringQueue("all")
    queue.push(Queued("a"))
    queue.push(Queued("b"))

    assert queue.take() == [Queued("a"), Queued("b")]
    assert len(queue) == 0


def test_queue_is_bounded_and_clearable() -> None:
    queue = SteeringQueue(maxsize=10)

    accepted = [queue.push(Queued(str(i))) for i in range(11)]

    assert accepted == [True] * 10 + [False]
    assert len(queue.clear()) == 10 and not queue
    assert queue.take() == []
