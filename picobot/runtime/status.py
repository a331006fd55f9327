"""What `GET /api/status` and `picobot status` show: counts and states, never message ids or
texts beyond the newest dead letters (the endpoint is behind the web token)."""

from __future__ import annotations

import os
import resource
import time
from typing import TYPE_CHECKING

from picobot.core import metrics
from picobot.core.errors import StorageError

if TYPE_CHECKING:
    from picobot.runtime.daemon import Daemon


async def collect_status(daemon: Daemon) -> dict[str, object]:
    lanes = daemon.outbound.statistics()
    metrics.QUEUE_DEPTH.labels("inbound").set(daemon.inbound.statistics().size)
    metrics.QUEUE_DEPTH.labels("outbound").set(lanes["queued"])
    cluster = {"cluster": await daemon.cluster.status()} if daemon.cluster is not None else {}
    return cluster | {
        "uptime": round(time.time() - daemon.started_at, 1),
        "rss_bytes": rss_bytes(),
        "channels": {
            n: {"state": c.state.value, "detail": c.state_detail}
            for n, c in daemon.channels.items()
        },
        "bus": {"inbound": daemon.inbound.statistics()._asdict()},
        "dispatch": lanes,
        "intake": daemon.intake.summary(),  # counts, not ids: others may reach /api/status
        "media": daemon.media.statistics(),
        "outbox": await outbox_status(daemon),
        **await daemon.abilities.status(),  # "mcp": {NAME: {state, tools, error}}, "schedule"
    }


async def outbox_status(daemon: Daemon) -> dict[str, object]:
    """Counts and the newest dead letters: in cluster mode, every node's (shared)."""
    try:
        counts = await daemon.records.counts()
        letters = await daemon.records.dead_letters(5)
    except StorageError as exc:
        return {"error": str(exc)}
    return {**counts, "dead_letters": [d._asdict() for d in letters]}


def rss_bytes() -> int:
    """Resident memory now (/proc/self/statm), else the peak (getrusage, off Linux)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
