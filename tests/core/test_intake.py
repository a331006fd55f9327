import pytest

from picobot.core.bus import Topic
from picobot.core.errors import BusClosed
from picobot.core.messages import InboundMessage, Kind, OutboundMessage, Sender
from picobot.inbound.intake import SLOW_DOWN, Intake, Policy


def message(text: str = "hi", *, sender: Sender | None = None, **kw: object) -> InboundMessage:
    return InboundMessage("tg", "c1", sender or Sender("42", "Alice"), text, **kw)  # type: ignore[arg-type]


def make(policy: Policy) -> tuple[Intake, Topic[InboundMessage], list[OutboundMessage]]:
    topic: Topic[InboundMessage] = Topic("inbound")
    submitted: list[OutboundMessage] = []

    async def post(msg: OutboundMessage) -> None:
        submitted.append(msg)

    return Intake(topic, post, {"tg": policy}), topic, submitted


async def test_allow_list_by_id_and_username() -> None:
    for allow in (("42",), ("@alice",), ("alice",), ("*",)):
        intake, topic, _ = make(Policy(allow_from=allow))
        await intake(message())
        assert topic.statistics().size == 1, allow


async def test_empty_allow_list_admits_nobody_and_costs_nothing() -> None:
    intake, topic, submitted = make(Policy(allow_from=()))
    await intake(message())
    assert topic.statistics().size == 0
    assert submitted == []  # no placeholder, no reply


async def test_unknown_channel_is_refused() -> None:
    intake, topic, _ = make(Policy())
    await intake(InboundMessage("other", "c", Sender("1"), "hi"))
    assert topic.statistics().size == 0


async def test_groups_need_a_mention_unless_open() -> None:
    intake, topic, _ = make(Policy(group_policy="mention"))
    await intake(message(is_group=True))
    assert topic.statistics().size == 0
    await intake(message(is_group=True, mentioned=True))
    assert topic.statistics().size == 1

    intake, topic, _ = make(Policy(group_policy="open"))
    await intake(message(is_group=True))
    assert topic.statistics().size == 1


async def test_accepted_message_gets_placeholder_before_it_is_published() -> None:
    intake, topic, submitted = make(Policy(placeholder="Thinking…"))
    msg = message()
    await intake(msg)
    assert [(o.kind, o.text, o.in_reply_to) for o in submitted] == [
        (Kind.ACCEPTED, "Thinking…", msg.id)
    ]
    assert await topic.get() is msg


async def test_flood_sender_is_told_once_then_ignored() -> None:
    intake, topic, submitted = make(Policy(inbound_rate=3))
    for i in range(6):
        await intake(message(f"m{i}"))
    assert topic.statistics().size == 3
    warnings = [o for o in submitted if o.text == SLOW_DOWN]
    assert len(warnings) == 1
    # Another sender is not affected.
    await intake(message("other", sender=Sender("7", "bob")))
    assert topic.statistics().size == 4


async def test_closed_bus_refuses_so_the_platform_can_redeliver() -> None:
    intake, topic, submitted = make(Policy())
    topic.close()
    with pytest.raises(BusClosed):
        await intake(message())
    assert submitted == []
