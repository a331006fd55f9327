"""Streaming, two ways.

1. A 6 s streamed reply at flush interval 1.0, through the real Telegram adapter and the
   loopback Bot API fake: edits against their bound ceil(T/interval)+1, "message is not
   modified" answers (target 0), time to the first visible partial text (target ≤ interval +
   0.3 s), and Bot API calls per reply.
2. Render cost: a streamed reply of REPLY_CHARS characters of mixed Markdown fed to the streamer
   in 20-character deltas, flushed every TICK_CHARS characters (about what a model writes in a
   1 s interval), with the door's work for each live edit (`render_chunks` of the text, as
   `LiveUpdates.update` does). CPU per edit and in total, for Telegram's limit (the reply is
   frozen into ten messages) and for Slack's (one message growing to 40 000 characters); the
   same at half the length shows whether the cost is linear (ratio 2) or quadratic (ratio 4).
"""

from __future__ import annotations

import math
import os
import tempfile
import time

from channels.slack_channel import CAPABILITIES as SLACK
from channels.telegram_channel import CAPABILITIES as TELEGRAM
from picobot.config import parse_config
from picobot.core import events as ev
from picobot.core.channel import Capabilities
from picobot.core.messages import InboundMessage, OutboundMessage, Sender
from picobot.outbound.streaming import StreamingReply
from picobot.runtime.daemon import Daemon
from picobot.text.chunks import render_chunks
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
        "not_modified": sum("not modified" in (c.description or "") for c in calls),
        "calls": len(calls),
        "rate_limited": len(fake.rate_limited),
    }


# -- render cost ---------------------------------------------------------------------------

REPLY_CHARS = 40_000
TICK_CHARS = 200
DELTA_CHARS = 20


def markdown_reply(size: int, salt: str) -> str:
    """Mixed Markdown like a model's long answer; every block different (no cache hits)."""
    blocks: list[str] = []
    n = length = 0
    while length < size:
        i = f"{salt}{n}"
        if n % 6 == 0:
            block = f"## Part {i}"
        elif n % 6 == 3:
            block = f"- item {i} with `code`\n- item {i}b with **bold**\n- last {i}"
        elif n % 6 == 5:
            block = f"```python\ndef f(x):\n    return x * {n}  # {i}\n```"
        else:
            block = (
                f"Paragraph {i}: some **bold** and _italic_ text, `inline code` and a "
                f"[link](https://example.com/{n}), then a sentence that ends here."
            )
        blocks.append(block)
        length += len(block) + 2
        n += 1
    return "\n\n".join(blocks)[:size]


async def render_cost(caps: Capabilities, size: int, salt: str) -> dict[str, float]:
    """CPU s per edit (mean, max) and in total, and the final rendering's."""
    text = markdown_reply(size, salt)
    edit_cpu: list[float] = []

    async def door(msg: OutboundMessage) -> list[str]:
        render_chunks(msg.text, caps, plain=msg.plain)  # what LiveUpdates.update renders
        return ["1"]

    inbound = InboundMessage(channel="bench", chat_id="1", sender=Sender(id="u"), text="hi")
    writer = StreamingReply(inbound, caps, door, interval=3600.0)  # ticks driven below
    for start in range(0, size, DELTA_CHARS):
        await writer.feed(ev.TextDelta(text[start : start + DELTA_CHARS]))
        if (start + DELTA_CHARS) % TICK_CHARS == 0:
            before = time.process_time()
            await writer._flush()  # one timer tick, without waiting for the timer
            edit_cpu.append(time.process_time() - before)
    before = time.process_time()
    await writer.feed(ev.TurnFinished(text))
    final = time.process_time() - before
    return {
        "edits": writer.flushes,
        "mean": sum(edit_cpu) / len(edit_cpu),
        "max": max(edit_cpu),
        "total": sum(edit_cpu),
        "final": final,
    }


async def main() -> str:
    r = await run_once()
    target = INTERVAL + 0.3
    rows = []
    await render_cost(TELEGRAM, 2 * TICK_CHARS, "warm-up")  # builds the Markdown parser
    for name, caps in (("Telegram (4 096)", TELEGRAM), ("Slack (40 000)", SLACK)):
        full = await render_cost(caps, REPLY_CHARS, f"{name} full ")
        half = await render_cost(caps, REPLY_CHARS // 2, f"{name} half ")
        rows.append(
            f"| {name} | {full['edits']:.0f} | {1e3 * full['mean']:.2f} ms "
            f"| {1e3 * full['max']:.2f} ms | {full['total']:.3f} s | {1e3 * full['final']:.1f} ms "
            f"| {full['total'] / half['total']:.1f} |"
        )
    return (
        "## Streaming (Telegram adapter ↔ loopback Bot API fake)\n\n"
        f"A {DURATION:g} s reply streamed at flush interval {INTERVAL:g} s, placeholder on.\n\n"
        '| edits | bound ceil(d/i)+1 | "not modified" | first partial visible | target '
        "| API calls/reply | 429s |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {r['edits']} | {r['bound']} (+1 placeholder→text) | {r['not_modified']} "
        f"(target 0: {'met' if r['not_modified'] == 0 else '**missed**'}) "
        f"| {r['first_partial']:.2f} s "
        f"| ≤ {target:.1f} s: {'met' if r['first_partial'] <= target else '**missed**'} "
        f"| {r['calls']} | {r['rate_limited']} |\n\n"
        "## Streaming render cost\n\n"
        f"A {REPLY_CHARS:,}-character Markdown reply in {DELTA_CHARS}-character deltas, one edit "
        f"per {TICK_CHARS} characters; CPU of the streamer's tick plus the door's rendering of "
        "the edit. The last column is the total for the whole reply over the total for half of "
        "it: 2 is linear, 4 quadratic (target: linear).\n\n"
        "| limit | edits | CPU/edit, mean | CPU/edit, max | render CPU, whole reply "
        "| final rendering | 40k / 20k |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
