"""The media store: files under ``data_dir/media``, named by the SHA-256 of their content.

    put(chunks) ─► .incoming/<random> (streamed, size-capped, hashed) ─► sniff + checks
                ─► rename to <sha256> (a second copy of the same bytes is dropped)

Nothing is ever written or served outside the store's directory: ids are 64 hex digits, and
user-supplied names are only ever display names. Files untouched for `ttl` seconds are
removed by the janitor (`sweep()`); storing the same bytes again renews them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO, NamedTuple

from picobot.core import metrics
from picobot.core.messages import Attachment, AttachmentKind
from picobot.media.errors import EmptyFile, FileTooLarge, MediaNotFound
from picobot.media.sniff import HEAD_BYTES, check_name, extension_for, safe_name, sniff

log = logging.getLogger("picobot.media")

DIR_NAME = "media"
INCOMING = ".incoming"
DEFAULT_MAX_BYTES = 20_000_000
DEFAULT_TTL = 7 * 24 * 3600
CHUNK = 256 * 1024  # read size when streaming a stored file out
_ID = re.compile(r"[0-9a-f]{64}")


class StoreStats(NamedTuple):
    files: int
    bytes: int


class MediaStore:
    """Content-addressed files with a size cap and a time to live.

    Error handling: `put()` raises a `MediaError` naming the problem (too large, empty,
    unsafe name, content that does not match its name, an undecodable image); nothing of a
    refused file stays on disk.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
        writer: str = "",
    ) -> None:
        self.root = Path(root).resolve()
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.clock = clock
        # Files being received, renamed into place when complete. `writer` names this daemon
        # when several share the folder (cluster mode): each clears only its own leftovers.
        self._incoming = self.root / INCOMING / writer if writer else self.root / INCOMING

    def open(self) -> None:
        """Create the directories; drop half-written files a crash left behind."""
        # Users' files: private (parents=True would give the root the default mode).
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._incoming.mkdir(mode=0o700, parents=True, exist_ok=True)
        for leftover in self._incoming.iterdir():
            leftover.unlink(missing_ok=True)

    # -- in -------------------------------------------------------------------------------

    async def put(
        self,
        chunks: AsyncIterable[bytes],
        *,
        name: str | None = None,
        kind: AttachmentKind | None = None,
        size: int | None = None,
        max_bytes: int | None = None,
    ) -> Attachment:
        """Store a file streamed as `chunks`; `size` is what the platform reported, if it did.

        The stream is closed early (no more bytes are fetched) as soon as the file is over the
        limit, and not started at all when the reported `size` already is.

        :raises MediaError: a `FileTooLarge`, `EmptyFile`, `UnsafeName`, `ContentMismatch` or
            `NotAnImage`, whose `reason` is the one line to show the user.
        """
        limit = self.max_bytes if max_bytes is None else max_bytes
        display = safe_name(name)
        if size is not None and size > limit:
            raise FileTooLarge(size, limit)
        self._incoming.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = self._incoming / secrets.token_hex(8)
        try:
            digest, total, head = await self._receive(chunks, temp, limit)
            if total == 0:
                raise EmptyFile()
            sniffed = sniff(head, display)
            if name:
                check_name(display, sniffed)
            width = height = None
            if sniffed.family == "image":
                from picobot.media import images  # Pillow: loaded when the first image comes

                width, height = await asyncio.to_thread(images.inspect, temp)
            target = self.root / digest
            if target.exists():
                temp.unlink()  # the same bytes again: kept once, for another ttl
            else:
                temp.replace(target)
            now = self.clock()
            os.utime(target, (now, now))
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        metrics.MEDIA_STORED_BYTES.inc(total)
        return Attachment(
            kind=_kind(sniffed.family, kind),
            name=(name and display) or f"{kind or 'file'}{extension_for(sniffed.mime)}",
            mime=sniffed.mime,
            size=total,
            id=digest,
            width=width,
            height=height,
        )

    async def put_bytes(
        self, data: bytes, *, name: str | None = None, kind: AttachmentKind | None = None
    ) -> Attachment:
        async def one() -> AsyncIterator[bytes]:
            yield data

        return await self.put(one(), name=name, kind=kind, size=len(data))

    async def _receive(
        self, chunks: AsyncIterable[bytes], temp: Path, limit: int
    ) -> tuple[str, int, bytes]:
        digest = hashlib.sha256()
        total = 0
        head = b""
        iterator = aiter(chunks)
        try:
            with _private(temp) as out:
                async for chunk in iterator:
                    total += len(chunk)
                    if total > limit:
                        raise FileTooLarge(total, limit)
                    if len(head) < HEAD_BYTES:
                        head += chunk[: HEAD_BYTES - len(head)]
                    digest.update(chunk)
                    await asyncio.to_thread(_write, out, chunk)
        finally:
            if isinstance(iterator, AsyncGenerator):  # stop the download (closes its response)
                with contextlib.suppress(Exception):
                    await iterator.aclose()
        return digest.hexdigest(), total, head

    # -- out ------------------------------------------------------------------------------

    def path(self, media_id: str) -> Path:
        """The file of `media_id`, always inside the store.

        :raises MediaNotFound: for an id that is not 64 hex digits, or a file gone (expired).
        """
        if not _ID.fullmatch(media_id):
            raise MediaNotFound()
        path = self.root / media_id
        if not path.is_file():
            raise MediaNotFound()
        return path

    async def read(self, media_id: str) -> bytes:
        return await asyncio.to_thread(self.path(media_id).read_bytes)

    async def stream(self, media_id: str) -> AsyncIterator[bytes]:
        """The file's bytes in chunks, without holding the whole file in memory."""
        path = self.path(media_id)
        with path.open("rb") as f:
            while chunk := await asyncio.to_thread(f.read, CHUNK):
                yield chunk

    # -- upkeep ---------------------------------------------------------------------------

    def sweep(self) -> int:
        """Remove files older than `ttl` (by last store); returns how many went."""
        cutoff = self.clock() - self.ttl
        removed = 0
        for path in self._files():
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        if removed:
            log.info("media janitor removed %d expired files", removed)
        return removed

    async def run_janitor(self, interval: float = 3600.0) -> None:
        """Sweep now and then every `interval` seconds, until cancelled."""
        while True:
            await asyncio.to_thread(self.sweep)
            await asyncio.sleep(interval)

    def stats(self) -> StoreStats:
        files = list(self._files())
        size = 0
        for path in files:
            with contextlib.suppress(FileNotFoundError):
                size += path.stat().st_size
        return StoreStats(len(files), size)

    def _files(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.iterdir() if _ID.fullmatch(p.name)]


def _write(out: BinaryIO, chunk: bytes) -> None:
    out.write(chunk)


def _kind(family: str, hint: AttachmentKind | None) -> AttachmentKind:
    if family == "image":
        return AttachmentKind.IMAGE
    if family in ("audio", "video") and hint in (AttachmentKind.VOICE, AttachmentKind.AUDIO):
        return hint
    if family == "audio":
        return AttachmentKind.AUDIO
    if family == "video":
        return AttachmentKind.VIDEO
    return AttachmentKind.FILE


def _private(path: Path) -> io.BufferedWriter:
    """A new file readable by its owner only (users' files)."""
    return open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")
