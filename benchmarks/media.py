"""The media store: bytes/s in and out, and RSS while 50 files of 10 MB flow through it.

1. Straight into `MediaStore.put` in 64 KiB chunks (made on the fly, each file's bytes
   different, as a download hands them over), then read back with `MediaStore.stream`.
2. The web chat's way: 50 multipart uploads over HTTP (aiohttp client → the upload form reader
   of `picobot.webui.uploads` → the store), client and server in this process.

RSS (/proc/self/statm) is sampled after every file: streaming to disk, it must not grow with the
file size (buffering whole files would add ~10 MB per file in flight).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.payload import AsyncIterablePayload

from picobot.media.store import MediaStore
from picobot.webui.uploads import read_form

FILES = 50
SIZE = 10_000_000
CHUNK = 64 * 1024


def rss_mb() -> float:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


async def chunks(seed: int) -> AsyncIterator[bytes]:
    block = hashlib.sha256(str(seed).encode()).digest() * (CHUNK // 32)
    sent = 0
    while sent < SIZE:
        piece = block[: min(CHUNK, SIZE - sent)]
        sent += len(piece)
        yield piece


async def flow(root: Path) -> dict[str, object]:
    store = MediaStore(root, max_bytes=2 * SIZE)
    store.open()
    before = rss_mb()
    samples: list[float] = []
    ids: list[str] = []
    wall = time.perf_counter()
    for i in range(FILES):
        stored = await store.put(chunks(i), name=f"file{i}.bin")
        ids.append(stored.id or "")
        samples.append(rss_mb())
    put_seconds = time.perf_counter() - wall
    wall = time.perf_counter()
    read = 0
    for media_id in ids:
        async for piece in store.stream(media_id):
            read += len(piece)
        samples.append(rss_mb())
    read_seconds = time.perf_counter() - wall
    return {
        "before": before,
        "peak": max(samples),
        "growth": samples[-1] - samples[0],
        "put_rate": FILES * SIZE / put_seconds,
        "read_rate": read / read_seconds,
        "files": store.stats().files,
    }


async def uploads(root: Path) -> dict[str, float]:
    store = MediaStore(root, max_bytes=2 * SIZE)
    store.open()

    async def handler(request: web.Request) -> web.Response:
        form = await read_form(request, store, 1000)
        return web.json_response({"stored": len(form.attachments)})

    app = web.Application()
    app.router.add_post("/upload", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/upload"
    before = rss_mb()
    samples: list[float] = []
    wall = time.perf_counter()
    try:
        async with aiohttp.ClientSession() as session:
            for i in range(FILES):
                form = aiohttp.FormData()
                body = AsyncIterablePayload(chunks(1000 + i))
                form.add_field("files", body, filename=f"up{i}.bin")
                async with session.post(url, data=form) as response:
                    assert (await response.json())["stored"] == 1
                samples.append(rss_mb())
    finally:
        await runner.cleanup()
    seconds = time.perf_counter() - wall
    return {
        "before": before,
        "peak": max(samples),
        "growth": samples[-1] - samples[0],
        "rate": FILES * SIZE / seconds,
    }


async def main() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        r = await flow(Path(tmp) / "media")
        u = await uploads(Path(tmp) / "uploads")
    growth: float = r["growth"]  # type: ignore[assignment]
    verdict = "flat" if abs(growth) < 5.0 else "grows"
    return (
        "## Media store: 50 × 10 MB files\n\n"
        f"{FILES} files of {SIZE / 1e6:.0f} MB streamed into the store in {CHUNK // 1024} KiB"
        f" chunks (hashed, size-checked, sniffed), then read back; {r['files']} files stored."
        "\n\n| store (in) | read (out) | RSS before | peak RSS | first → last file |\n"
        "|---|---|---|---|---|\n"
        f"| {r['put_rate'] / 1e6:,.0f} MB/s | {r['read_rate'] / 1e6:,.0f} MB/s"  # type: ignore[operator]
        f" | {r['before']:.1f} MB | {r['peak']:.1f} MB | {growth:+.1f} MB ({verdict}) |\n"
        "\nThe same 50 × 10 MB as web chat uploads (multipart over HTTP into the store):\n\n"
        "| upload rate | RSS before | peak RSS | first → last file |\n|---|---|---|---|\n"
        f"| {u['rate'] / 1e6:,.0f} MB/s | {u['before']:.1f} MB | {u['peak']:.1f} MB"
        f" | {u['growth']:+.1f} MB ({'flat' if abs(u['growth']) < 5.0 else 'grows'}) |\n"
    )


if __name__ == "__main__":
    print(asyncio.run(main()))
