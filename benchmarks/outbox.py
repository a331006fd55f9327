"""RSS while 10 000 replies wait for a platform that is down, and the outbox's write rate.

In-process: the outbound door with an Outbox (SQLite in a temporary directory) and a channel whose
every send raises `ChannelTimeout`. 10 000 replies over 100 chats are recorded in the outbox
and queued (`Outbound.post`, the path every reply takes); each lane retries its head reply
(short backoffs, so the retry loop spins many times during the hold). RSS (/proc/self/statm)
is sampled before, right after the submit, and after holding the outage for `HOLD` s.
Separately: replies recorded per second by `Outbox.add` (one committed SQLite statement each,
WAL, synchronous=NORMAL).
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from pathlib import Path

from picobot.core.channel import Capabilities, Channel, Rendered
from picobot.core.errors import ChannelTimeout
from picobot.core.messages import OutboundMessage
from picobot.core.retry import RetryPolicy
from picobot.outbound.delivery import DispatchSettings
from picobot.outbound.door import Outbound
from picobot.storage.outbox import Outbox

N = 10_000
CHATS = 100
HOLD = 10.0  # seconds the outage lasts after the submit
RECORDS = 10_000  # Outbox.add calls timed


class DownChannel(Channel):
    name = "down"
    capabilities = Capabilities(max_length=4096, format="markdown")

    def __init__(self) -> None:
        super().__init__(None, _sink)
        self.attempts = 0
        self.chats: set[str] = set()
        self.all_tried = asyncio.Event()  # every chat's lane recorded its head and tried it

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, chat_id: str, message: Rendered, **kw: object) -> str:
        self.attempts += 1
        self.chats.add(chat_id)
        if len(self.chats) == CHATS:
            self.all_tried.set()
        raise ChannelTimeout("platform down")


async def _sink(msg: object) -> None: ...


def rss_mb() -> float:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def queue_while_down(data_dir: Path) -> dict[str, object]:
    channel = DownChannel()
    retry = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.05)
    async with Outbox.in_dir(data_dir) as outbox:
        dispatcher = Outbound({"down": channel}, DispatchSettings(retry=retry), outbox=outbox)
        before = rss_mb()
        wall = time.perf_counter()
        for i in range(N):
            await dispatcher.post(
                OutboundMessage("down", str(i % CHATS), f"reply {i} " + "x" * 200)
            )
        await channel.all_tried.wait()
        queued_in = time.perf_counter() - wall
        after_submit = rss_mb()
        samples = []
        for _ in range(int(HOLD)):  # the outage goes on; the lanes keep retrying
            await asyncio.sleep(1.0)
            samples.append(rss_mb())
        after_hold = samples[-1]
        stats = dispatcher.statistics()
        pending = (await outbox.counts())["pending"]
        await dispatcher.aclose()
    return {
        "before": before,
        "after_submit": after_submit,
        "after_hold": after_hold,
        "queued_in": queued_in,
        "attempts": channel.attempts,
        "queued": stats["queued"],
        "pending": pending,
        "samples": samples,
    }


async def record_rate(data_dir: Path) -> float:
    async with Outbox.in_dir(data_dir) as outbox:
        msgs = [OutboundMessage("down", str(i % CHATS), f"reply {i}") for i in range(RECORDS)]
        wall = time.perf_counter()
        for msg in msgs:
            await outbox.add(msg)
        return RECORDS / (time.perf_counter() - wall)


async def main() -> str:
    logging.getLogger("picobot").setLevel(logging.ERROR)  # one warning per retry otherwise
    with tempfile.TemporaryDirectory() as tmp:
        down = await queue_while_down(Path(tmp) / "down")
        rate = await record_rate(Path(tmp) / "rate")
    samples: list[float] = down["samples"]  # type: ignore[assignment]
    growth = samples[-1] - samples[0]  # after the first second's warm-up (retry state, caches)
    verdict = "flat" if abs(growth) < 2.0 else "grows"
    return (
        "## Outbox: 10 000 replies for a platform that is down\n\n"
        f"{N} replies over {CHATS} chats to a channel whose sends all time out; held {HOLD:.0f} s"
        f" ({down['attempts']:,.0f} send attempts). All are on disk ({down['pending']:.0f} pending"
        f" in the outbox), queued on their lanes ({down['queued']:.0f} behind the heads)."
        "\n\n| RSS before | after submit | after 1 s | after the hold | 1 s → end | submit → all"
        " lanes retrying | Outbox.add |\n|---|---|---|---|---|---|---|\n"
        f"| {down['before']:.1f} MB | {down['after_submit']:.1f} MB | {samples[0]:.1f} MB"
        f" | {down['after_hold']:.1f} MB | {growth:+.1f} MB ({verdict})"
        f" | {down['queued_in'] * 1000:.0f} ms"
        f" | {rate:,.0f} replies/s |\n\n"
        "RSS each second of the hold: " + ", ".join(f"{mb:.1f}" for mb in samples) + " MB.\n"
    )


if __name__ == "__main__":
    print(asyncio.run(main()))
