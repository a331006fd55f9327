"""`make bench`: run every benchmark and write docs/benchmarks.md."""

from __future__ import annotations

import asyncio
import datetime
import os
import platform
from pathlib import Path

from benchmarks import (
    cluster,
    footprint,
    idle_connections,
    media,
    outbox,
    pipeline,
    realpath,
    streaming,
    telegram_burst,
)

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def main() -> None:
    sections = [realpath.main(), asyncio.run(pipeline.main())]
    sections.append(asyncio.run(streaming.main()))
    sections.append(asyncio.run(footprint.main()))
    sections.append(asyncio.run(outbox.main()))
    sections.append(asyncio.run(idle_connections.main()))
    sections.append(asyncio.run(media.main()))
    sections.append(asyncio.run(telegram_burst.main()))
    sections.append(asyncio.run(cluster.main()))
    today = datetime.date.today().isoformat()
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(
        "# Benchmarks\n\n"
        f"Written by `make bench` on {today}; machine: {machine()}.\n\n" + "\n".join(sections)
    )
    print(OUT.read_text())


main()
