"""A 6 s streamed reply at flush interval 1.0, through the real Telegram adapter and the
loopback Bot API fake: edits against their bound, time to the first visible partial text
(target ≤ interval + 0.3 s), and Bot API calls per reply."""

from __future__ import annotations

import math
import os
import tempfile
import time

from picobot.config import parse_config
from picobot.runtime.daemon import Daemon
from tests.fakes.fake_telegram import FakeTelegram
from tests.fakes.paced_llm import PacedLLM

DURATION = 6.0
INTERVAL = 1.0
REPLY = " ".join(f"token{i}" for i in range(240))
CHAT = 4242

os.environ.setdefault("PTB_TIMEDELTA", "1")  # as in tests/conftest.py: no PTB deprecation noise


async def run_once() -> dict[str, float]:
    async with FakeTelegram() as fake:
        data_dir = tempfile.mkdtemp(prefix="picobot-bench-")
        config = parse_config(
            fake.picobot_config(data_dir, streaming={"flush_interval": INTERVAL}), env={}
        )
        async with Daemon(config, llm=PacedLLM(REPLY, duration=DURATION, pieces=240)):
            before = len(fake.calls)
            sent_at = time.monotonic()
            fake.user_message(CHAT, "stream a long answer")

            def shows_text(f: FakeTelegram) -> bool:
                return any(m.text.startswith("token0") for m in f.chat_log(CHAT))

            await fake.wait_for(shows_text, timeout=30)
            first_partial = time.monotonic() - sent_at
            await fake.wait_for(
                lambda f: any(m.text == REPLY for m in f.chat_log(CHAT)), timeout=30
            )
            calls = [
                c
                for c in fake.calls[before:]
                if c.params.get("chat_id") == CHAT and c.method != "sendChatAction"
            ]
    edits = [c for c in calls if c.method == "editMessageText"]
    return {
        "first_partial": first_partial,
        "edits": len(edits),
        "bound": math.ceil(DURATION / INTERVAL) + 1,
        "calls": len(calls),
        "rate_limited": len(fake.rate_limited),
    }


async def main() -> str:
    r = await run_once()
    target = INTERVAL + 0.3
    return (
        "## Streaming (Telegram adapter ↔ loopback Bot API fake)\n\n"
        f"A {DURATION:g} s reply streamed at flush interval {INTERVAL:g} s, placeholder on.\n\n"
        "| edits | bound ceil(d/i)+1 | first partial visible | target | API calls/reply | 429s |\n"
        "|---|---|---|---|---|---|\n"
        f"| {r['edits']} | {r['bound']} (+1 placeholder→text) | {r['first_partial']:.2f} s "
        f"| ≤ {target:.1f} s: {'meets' if r['first_partial'] <= target else 'misses'} "
        f"| {r['calls']} | {r['rate_limited']} |\n"
    )
