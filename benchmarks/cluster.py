"""Cluster mode: `picobot run` processes on one Redis against the Telegram fake (limits off).

1. Throughput and per-message latency through the Redis path with 1, 2 and 3 nodes, next to
   the in-process path (no `cluster` key): one message in each of `CHATS` chats at once, the
   demo model at a fixed pace (`DEMO_DELAY` s per word, ~40 words a reply).
2. Failover: 3 nodes, `failover_seconds` 10 (the default); SIGKILL the polling node 10 times
   (restarting it each time) and time from the kill to the first `getUpdates` another node
   sends.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from tests.cluster.redis_server import RedisServer
from tests.e2e.harness import Picobot
from tests.fakes.fake_telegram import FakeTelegram

CHATS = 300
SINGLES = 20
DEMO_DELAY = "0.001"
FAILOVER = 10.0
KILLS = 10

os.environ.setdefault("PTB_TIMEDELTA", "1")


def config(tmp: Path, fake: FakeTelegram, redis: RedisServer | None, node: str) -> Path:
    data = fake.picobot_config(
        tmp / node,
        inbound_rate=10_000,
        placeholder={"enabled": False},
        streaming={"enabled": False},
    )
    data |= {"llm": {"provider": "demo"}, "agent": {"max_parallel_turns": 64}}
    if redis is not None:
        data["cluster"] = {"redis_url": redis.url, "node": node, "failover_seconds": FAILOVER}
    path = tmp / f"{node}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def throughput(
    tmp: Path, redis: RedisServer | None, nodes: int
) -> tuple[float, float, float]:
    """(messages/s, median seconds from a message to its reply in the burst, median for one
    message at a time)."""
    async with FakeTelegram(enforce_limits=False) as fake:
        bots = [
            Picobot(config(tmp, fake, redis, f"t{nodes}-{i}"), DEMO_DELAY) for i in range(nodes)
        ]
        try:
            for bot in bots:
                await bot.start()
            for bot in bots:
                await bot.ready()
            await fake.wait_for(lambda f: f.pending_polls == 1, 30)
            await asyncio.sleep(2 * FAILOVER / 5)  # let the partitions spread (heartbeats)
            alone = []
            for chat in range(20_000, 20_000 + SINGLES):
                at = time.monotonic()
                fake.user_message(chat, f"hello {chat}")
                await fake.wait_for(lambda f, c=chat: bool(f.chat_log(c)), 30)
                alone.append(time.monotonic() - at)
            chats = range(10_000, 10_000 + CHATS)
            sent = {}
            start = time.monotonic()
            for chat in chats:
                sent[chat] = time.monotonic()
                fake.user_message(chat, f"hello {chat}")

            def done(f: FakeTelegram) -> bool:
                return all(f.chat_log(c) for c in chats)

            await fake.wait_for(done, 300)
            elapsed = time.monotonic() - start
            first = {}
            for call in fake.calls:
                chat = call.params.get("chat_id")
                if call.method == "sendMessage" and chat in sent and chat not in first:
                    first[chat] = call.at
            latency = statistics.median(first[c] - sent[c] for c in chats)
            return CHATS / elapsed, latency, statistics.median(alone)
        finally:
            for bot in bots:
                if bot.proc is not None and bot.proc.returncode is None:
                    await bot.stop(signal.SIGKILL)


async def failover(tmp: Path, redis: RedisServer) -> list[float]:
    times: list[float] = []
    async with FakeTelegram(enforce_limits=False) as fake:
        paths = [config(tmp, fake, redis, f"f{i}") for i in range(3)]
        bots = [Picobot(p, DEMO_DELAY) for p in paths]
        try:
            for bot in bots:
                await bot.start()
            for bot in bots:
                await bot.ready()
            for _ in range(KILLS):
                holder = await _holder(bots)
                polls = fake.polls_received
                killed_at = time.monotonic()
                await bots[holder].stop(signal.SIGKILL)
                # The dead node sends no more: the next getUpdates is its successor's.
                await fake.wait_for(lambda f, seen=polls: f.polls_received > seen, 60)
                times.append(time.monotonic() - killed_at)
                bots[holder] = Picobot(paths[holder], DEMO_DELAY)
                await bots[holder].start()
                await bots[holder].ready()
        finally:
            for bot in bots:
                if bot.proc is not None and bot.proc.returncode is None:
                    await bot.stop(signal.SIGKILL)
    return times


async def _holder(bots: list[Picobot]) -> int:
    """The index of the node polling now (its latest lease line is newer than any loss)."""
    async with asyncio.timeout(60):
        while True:
            for i, bot in enumerate(bots):
                held = [n for n, line in enumerate(bot.lines) if "lease telegram: held" in line]
                lost = [n for n, line in enumerate(bot.lines) if "lease telegram: lost" in line]
                if held and (not lost or held[-1] > lost[-1]):
                    return i
            await asyncio.sleep(0.1)


async def main() -> str:
    tmp = Path(tempfile.mkdtemp(prefix="picobot-bench-cluster-"))
    try:
        with RedisServer(tmp / "redis") as redis:
            rows = [("in-process (no cluster)", *await throughput(tmp, None, 1))]
            for nodes in (1, 2, 3):
                await _flush(redis)
                rows.append((f"Redis, {nodes} node(s)", *await throughput(tmp, redis, nodes)))
            await _flush(redis)
            kills = await failover(tmp, redis)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    table = "\n".join(
        f"| {name} | {rate:,.0f} | {lat * 1000:.0f} ms | {one * 1000:.0f} ms |"
        for name, rate, lat, one in rows
    )
    q = statistics.quantiles(kills, n=10)
    return (
        "## Cluster mode (`picobot run` processes on one Redis, Telegram fake, limits off)\n\n"
        f"{CHATS} chats send one message each at once; then {SINGLES} messages one at a time "
        f"(each waits for its reply). The demo model takes {DEMO_DELAY} s per word (~40 words). "
        "Every node shares this machine's 2 cores. The burst is bound by the Telegram adapter's "
        "own overall budget (30 sends/s), which the nodes share through Redis: more nodes do not "
        "send faster, by design. The one-at-a-time column shows the Redis path's overhead.\n\n"
        "| path | burst messages/s | burst: median message → reply | one at a time: "
        "message → reply |\n|---|---|---|---|\n"
        f"{table}\n\n"
        f"Failover, 3 nodes, `failover_seconds: {FAILOVER:g}`: the polling node SIGKILLed "
        f"{KILLS} times; kill → another node's first `getUpdates`:\n\n"
        "| min | median | p90 | max | target |\n|---|---|---|---|---|\n"
        f"| {min(kills):.1f} s | {statistics.median(kills):.1f} s | {q[-1]:.1f} s | "
        f"{max(kills):.1f} s | ≤ {FAILOVER:g} s: "
        f"{'meets' if max(kills) <= FAILOVER else 'misses'} |\n"
    )


async def _flush(redis: RedisServer) -> None:
    from picobot.cluster import connect

    client = connect(redis.url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


if __name__ == "__main__":
    print(asyncio.run(main()))
