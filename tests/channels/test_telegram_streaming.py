"""Streaming through the real Telegram adapter and FakeTelegram: one message grows by edits at
the flush interval and ends as the exact, formatted reply."""

import math
from pathlib import Path

from picobot.agent.paced import PacedLLM
from picobot.config import parse_config
from picobot.daemon import Daemon
from tests.fakes.fake_telegram import FakeTelegram

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
