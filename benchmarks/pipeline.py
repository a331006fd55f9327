"""The outbound door → lanes → null channel, outbox and limits off.

Measures messages per second and CPU µs per message for the outbound path that every reply
takes: outbound topic, lane routing, chunking/rendering, rate-limit check, retry wrapper, send.
Targets (issue #2): ≥ 20 000 msg/s and ≤ 100 µs CPU per message on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import time

from picobot.core.channel import Capabilities, Channel, Rendered
from picobot.core.messages import OutboundMessage
from picobot.outbound.door import Outbound

N = 50_000
CHATS = 100


class NullChannel(Channel):
    name = "null"
    capabilities = Capabilities(max_length=4096, format="markdown")  # no platform markup

    def __init__(self) -> None:
        super().__init__(None, _sink)
        self.sent = 0
        self.done = asyncio.Event()

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, chat_id: str, message: Rendered, **kw: object) -> str:
        self.sent += 1
        if self.sent == N:
            self.done.set()
        return str(self.sent)


async def _sink(msg: object) -> None: ...


async def run_once() -> tuple[float, float]:
    channel = NullChannel()
    outbound = Outbound({"null": channel})
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(N):
        await outbound.post(OutboundMessage("null", str(i % CHATS), f"message {i}"))
    await channel.done.wait()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await outbound.aclose()
    return N / wall, cpu / N * 1e6


async def main() -> str:
    results = [await run_once() for _ in range(3)]
    rate, cpu_us = max(r[0] for r in results), min(r[1] for r in results)
    verdict = "meets" if rate >= 20_000 and cpu_us <= 100 else "misses"
    return (
        "## Pipeline (outbound door → lanes → null channel, outbox and limits off)\n\n"
        f"{N} messages over {CHATS} chats, best of 3.\n\n"
        "| messages/s | CPU µs/message | target |\n|---|---|---|\n"
        f"| {rate:,.0f} | {cpu_us:.1f} | ≥ 20 000 msg/s, ≤ 100 µs: {verdict} |\n"
    )
