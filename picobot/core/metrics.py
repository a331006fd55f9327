"""Prometheus metrics, served at /metrics. Names are public: extend, never rename."""

from __future__ import annotations

import functools
from typing import TypeVar

from prometheus_client import Counter, Gauge, Histogram

M = TypeVar("M", Counter, Gauge, Histogram)

INBOUND = Counter("picobot_inbound_messages", "Inbound messages", ["channel", "result"])
OUTBOUND = Counter("picobot_outbound_messages", "Outbound messages", ["channel", "result"])
RETRIES = Counter("picobot_retries", "Retries of platform calls by error class", ["kind"])
RATE_LIMITED = Counter("picobot_rate_limited", "429 / flood-wait answers", ["channel"])
EDITS = Counter("picobot_stream_edits", "Message edits (streaming and placeholders)", ["channel"])
LANES = Gauge("picobot_lanes", "Active per-chat delivery lanes")
QUEUE_DEPTH = Gauge("picobot_queue_depth", "Messages waiting on the bus", ["topic"])
TURN_SECONDS = Histogram("picobot_turn_seconds", "Agent turn latency", ["channel"])
MEDIA = Counter("picobot_media_files", "Files received and sent", ["channel", "direction"])
MEDIA_STORED_BYTES = Counter("picobot_media_stored_bytes", "Bytes written to the media store")
MEDIA_REJECTED = Counter("picobot_media_rejected", "Files refused, by reason", ["reason"])
CLUSTER_UP = Gauge("picobot_cluster_redis_up", "1 while this node reaches Redis (cluster mode)")
CLUSTER_PARTITIONS = Gauge("picobot_cluster_partitions", "Inbound partitions this node owns")
SQLITE_COMMITS = Counter("picobot_sqlite_commits", "SQLite transactions committed", ["db"])


@functools.lru_cache(maxsize=1024)
def child(metric: M, *labels: str) -> M:
    """`metric.labels(*labels)`, remembered: `labels()` validates and locks on every call, and
    the hot path (every message) asks for the same few children."""
    return metric.labels(*labels)
