"""Streaming through the real Telegram adapter and FakeTelegram: one message grows by edits at
the flush interval and ends as the exact, formatted reply."""

import math
from pathlib import Path

from picobot.config import parse_config
from picobot.runtime.daemon import Daemon
from tests.fakes.fake_telegram import FakeTelegram
from tests.fakes.paced_llm import PacedLLM

INTERVAL = 0.2
REPLY = "Streaming works: " + " ".join(f"word{i}" for i in range(40)) + " and **done**."


async def test_reply_grows_by_edits_and_ends_formatted(tmp_path: Path) -> None:
    async with FakeTelegram() as fake:
        config = parse_config(
            fake.picobot_config(tmp_path, streaming={"flush_interval": INTERVAL}), env={}
        )
        llm = PacedLLM(REPLY, duration=1.5, pieces=30)
        async with Daemon(config, llm=llm):
            fake.user_message(42, "stream please")
            await fake.wait_for(
                lambda f: any(m.text.endswith("and done.") for m in f.chat_log(42)), timeout=15
            )
        [message] = fake.chat_log(42)  # one message: the placeholder, edited all the way
        assert message.text == REPLY.replace("**done**", "done")  # visible text, formatted
        assert message.parse_mode == "HTML" and "<b>done</b>" in message.raw_text
        partials = message.history[1:]  # after "Thinking…"
        assert len(partials) >= 2  # it really streamed
        assert all(REPLY.startswith(p) for p in partials)  # growing prefixes, plain text
        assert len(set(message.history)) == len(message.history)  # no unchanged edit
        edits = [c for c in fake.calls if c.method == "editMessageText" and c.status == 200]
        assert len(edits) <= math.ceil(1.5 / INTERVAL) + 3  # ticks, final edit, slack for start
        assert fake.rate_limited == []


async def test_draft_mode_previews_natively_then_sends_one_real_message(tmp_path: Path) -> None:
    async with FakeTelegram() as fake:
        config = parse_config(
            fake.picobot_config(
                tmp_path,
                streaming={"flush_interval": INTERVAL, "mode": "draft"},
                placeholder={"enabled": False},
            ),
            env={},
        )
        async with Daemon(config, llm=PacedLLM(REPLY, duration=1.5, pieces=30)):
            fake.user_message(42, "stream please")
            await fake.wait_for(
                lambda f: any(m.text.endswith("and done.") for m in f.chat_log(42)), timeout=15
            )
        drafts = [d.text for d in fake.drafts if d.chat_id == 42]
        assert len(drafts) >= 2  # the preview grew natively
        assert all(REPLY.startswith(d) for d in drafts)
        assert len({d.draft_id for d in fake.drafts}) == 1  # one draft, updated
        [message] = fake.chat_log(42)  # and it ended as one real, formatted message
        assert message.text == REPLY.replace("**done**", "done") and message.edits == 0
        assert [c.method for c in fake.calls].count("editMessageText") == 0


async def test_draft_mode_in_a_group_streams_by_edits(tmp_path: Path) -> None:
    async with FakeTelegram() as fake:
        config = parse_config(
            fake.picobot_config(
                tmp_path,
                streaming={"flush_interval": INTERVAL, "mode": "draft"},
                group_policy="open",
            ),
            env={},
        )
        async with Daemon(config, llm=PacedLLM(REPLY, duration=1.0, pieces=20)):
            fake.user_message(-100, "stream please", chat_type="supergroup")
            await fake.wait_for(
                lambda f: any(m.text.endswith("and done.") for m in f.chat_log(-100)), timeout=15
            )
        assert fake.drafts == []  # drafts are for private chats only
        [message] = fake.chat_log(-100)
        assert message.edits >= 2
