"""The real path a user's message takes, end to end, durability on.

`Daemon` with a data_dir in a temporary folder (SQLite, WAL): each inbound message goes through
the intake (recorded in the outbox), the agent (an instant fake model; the session history is
loaded and saved), the streaming writer, the outbound door (the reply recorded in the outbox,
then its lane) and the delivery (split, render) to a null channel with Telegram's capabilities
and no rate budget. Measured: messages/s, CPU µs per message, latency from the intake call to
the channel's send (p50/p99), and SQLite commits per message.
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import tempfile
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any, ClassVar
from unittest import mock

from prometheus_client import REGISTRY

import channels as channel_registry
from picobot.agent.llm import Finish, LLMEvent, Message, TextDelta
from picobot.config import parse_config
from picobot.core.channel import NO_SERVICES, Capabilities, Channel, InboundSink, Rendered
from picobot.core.channel import Services as ChannelServices
from picobot.core.messages import InboundMessage, Sender
from picobot.runtime.daemon import Daemon

N = int(os.environ.get("REALPATH_N", "5000"))  # one sender each: flood guard per sender
REPLY = "Here is **your** answer, with a [link](https://example.org) and some `code`."
TARGET_RATE, TARGET_CPU = 5_000, 200.0


class InstantLLM:
    name = "instant"

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None = None
    ) -> AsyncGenerator[LLMEvent, None]:
        yield TextDelta(REPLY)
        yield Finish("stop")

    async def aclose(self) -> None:
        return None


class NullChannel(Channel):
    """Telegram's capabilities, no platform: each send is noted with its time."""

    name = "web"  # enabled by the default config; access is open, so the intake lets all in
    capabilities = Capabilities(
        max_length=4096, format="telegram_html", measure_visible=True, can_edit=True
    )
    sent: ClassVar[dict[str, float]] = {}  # chat -> when its reply was sent
    done: ClassVar[asyncio.Event]

    def __init__(
        self, config: Any, sink: InboundSink, services: ChannelServices = NO_SERVICES
    ) -> None:
        super().__init__(config, sink, services)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(
        self, chat_id: str, message: Rendered, *, reply_to: str | None = None, **kw: Any
    ) -> str:
        sent = NullChannel.sent
        sent[chat_id] = time.perf_counter()
        if len(sent) >= N:
            NullChannel.done.set()
        return str(len(sent))

    async def edit(self, chat_id: str, message_id: str, message: Rendered) -> None:
        return None


def sqlite_commits() -> float:
    """Transactions committed so far, all databases (the metric picobot exports)."""
    return sum(
        REGISTRY.get_sample_value("picobot_sqlite_commits_total", {"db": db}) or 0.0
        for db in ("outbox", "sessions")
    )


async def run_once(senders: int = 1) -> dict[str, float]:
    """`senders`: how many intake calls are in flight at once (1: one after another)."""
    NullChannel.sent, NullChannel.done = {}, asyncio.Event()
    with tempfile.TemporaryDirectory() as tmp:
        data = {
            "data_dir": tmp,
            "http": {"port": 0},
            "agent": {"max_parallel_turns": 64},
            "log": {"level": "warning"},
        }
        config = parse_config(data, env={})
        with mock.patch.object(channel_registry, "load", lambda name: NullChannel):
            async with Daemon(config, llm=InstantLLM()) as daemon:  # type: ignore[arg-type]
                commits = sqlite_commits()
                started: dict[str, float] = {}
                wall, cpu = time.perf_counter(), time.process_time()

                async def feed(numbers: range) -> None:
                    for i in numbers:
                        # A conversation each: messages to a busy session would steer its turn.
                        msg = InboundMessage("web", f"chat{i}", Sender(f"u{i}"), f"question {i}")
                        started[msg.chat_id] = time.perf_counter()
                        await daemon.intake(msg)

                await asyncio.gather(*(feed(range(k, N, senders)) for k in range(senders)))
                await asyncio.wait_for(NullChannel.done.wait(), 300)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                per_message_commits = (sqlite_commits() - commits) / N
    latencies = sorted(NullChannel.sent[chat] - t for chat, t in started.items())
    return {
        "rate": N / wall,
        "cpu_us": cpu / N * 1e6,
        "p50_ms": statistics.median(latencies) * 1e3,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1e3,
        "commits": per_message_commits,
    }


async def main() -> str:
    logging.disable(logging.WARNING)
    try:
        r = max([await run_once() for _ in range(3)], key=lambda r: r["rate"])
    finally:
        logging.disable(logging.NOTSET)
    meets = r["rate"] >= TARGET_RATE and r["cpu_us"] <= TARGET_CPU
    return (
        "## The real path (intake → agent → writer → outbox → lanes → null channel)\n\n"
        f"{N} messages, each in a conversation of its own, best of 3; durability on (SQLite"
        " WAL in a temporary folder), an instant fake model, Telegram's capabilities, no rate"
        " budget.\n\n"
        "| messages/s | CPU µs/message | p50 | p99 | SQLite commits/message | target |\n"
        "|---|---|---|---|---|---|\n"
        f"| {r['rate']:,.0f} | {r['cpu_us']:.0f} | {r['p50_ms']:.0f} ms | {r['p99_ms']:.0f} ms "
        f"| {r['commits']:.1f} | ≥ {TARGET_RATE:,} msg/s, ≤ {TARGET_CPU:.0f} µs: "
        f"{'meets' if meets else 'misses'} |\n"
    )


if __name__ == "__main__":
    print(asyncio.run(main()))
