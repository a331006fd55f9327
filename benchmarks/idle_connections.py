"""`/healthz` under 1 100 half-open connections, with the default soft limit of 1 024 files.

The daemon runs with RLIMIT_NOFILE 1024:1024 (it cannot raise it), then 1 100 connections
each send ``GET /healthz HTTP/1.1\\r\\n`` and nothing more. Measured: the time for a fresh
``GET /healthz`` to be answered (median of `PROBES`). Target (issue #15): ≤ 1 s.
"""

from __future__ import annotations

import asyncio
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HALF_OPEN = 1100
FD_LIMIT = 1024
PROBES = 5
TARGET = 1.0


def _limit_fds() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


async def _probe(port: int) -> float:
    start = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
    return time.perf_counter() - start


def _spawn(tmp: str) -> tuple[subprocess.Popen[str], int]:
    """`picobot run` limited to FD_LIMIT files, once ready; and its port."""
    config = Path(tmp, "config.yaml")
    config.write_text(f"data_dir: {tmp}/data\nhttp:\n  port: 0\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "picobot", "run", "--config", str(config)],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_limit_fds,
    )
    assert proc.stderr is not None
    port = 0
    for line in proc.stderr:
        if match := re.search(r"http server on http://[^ ]+:(\d+)", line):
            port = int(match[1])
        if " ready: " in line:
            return proc, port
    raise RuntimeError("the daemon exited before it was ready")


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


async def measure() -> float:
    """Median seconds for /healthz to answer while HALF_OPEN connections hang."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < HALF_OPEN + 100:  # this process needs a descriptor per connection
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * HALF_OPEN), hard))
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = await asyncio.to_thread(_spawn, tmp)
        writers: list[asyncio.StreamWriter] = []
        try:
            for _ in range(HALF_OPEN):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /healthz HTTP/1.1\r\n")
                writers.append(writer)
            return statistics.median([await _probe(port) for _ in range(PROBES)])
        finally:
            for writer in writers:
                writer.close()
            await asyncio.to_thread(_stop, proc)


async def main() -> str:
    seconds = await measure()
    ok = "✓" if seconds <= TARGET else "✗"
    return "\n".join(
        [
            "## Idle connections",
            "",
            "| measure | result | target | |",
            "|---|---|---|---|",
            f"| `/healthz` with {HALF_OPEN} half-open connections, {FD_LIMIT} files "
            f"| {seconds:.3f} s | ≤ {TARGET:g} s | {ok} |",
            "",
        ]
    )


if __name__ == "__main__":
    print(asyncio.run(main()))
