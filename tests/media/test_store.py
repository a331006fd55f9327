from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from picobot.core.messages import AttachmentKind
from picobot.media import images
from picobot.media.errors import (
    ContentMismatch,
    EmptyFile,
    FileTooLarge,
    MediaNotFound,
    NotAnImage,
    UnsafeName,
    megabytes,
)
from picobot.media.extract import extract_text
from picobot.media.sniff import safe_name, sniff
from picobot.media.store import MediaStore
from tests.media import samples


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> MediaStore:
    s = MediaStore(tmp_path / "media", max_bytes=1_000_000, ttl=100, clock=Clock())
    s.open()
    return s


def outside(tmp_path: Path, store: MediaStore) -> list[Path]:
    """Every file under tmp_path that is not in the store's directory."""
    return [p for p in tmp_path.rglob("*") if p.is_file() and store.root not in p.parents]


async def test_stores_by_content_and_sniffs_the_type(store: MediaStore) -> None:
    data = samples.png(100, 50)
    a = await store.put_bytes(data, name="cat.png")
    assert a.id == hashlib.sha256(data).hexdigest()
    assert (a.kind, a.mime, a.size, a.width, a.height) == (
        AttachmentKind.IMAGE,
        "image/png",
        len(data),
        100,
        50,
    )
    assert await store.read(a.id) == data
    again = await store.put_bytes(data, name="other.png")
    assert again.id == a.id and store.stats().files == 1


async def test_declared_type_is_ignored(store: MediaStore) -> None:
    a = await store.put_bytes(samples.jpeg(), kind=AttachmentKind.FILE)
    assert a.mime == "image/jpeg" and a.kind is AttachmentKind.IMAGE
    assert a.name == "file.jpg"


async def test_voice_hint_kept_for_audio(store: MediaStore) -> None:
    a = await store.put_bytes(samples.ogg_opus(), kind=AttachmentKind.VOICE)
    assert (a.kind, a.mime) == (AttachmentKind.VOICE, "audio/ogg")


async def test_too_large_as_reported_is_not_downloaded(store: MediaStore) -> None:
    started = False

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal started
        started = True
        yield b"x"

    with pytest.raises(FileTooLarge) as info:
        await store.put(chunks(), name="big.bin", size=2_000_000_000)
    assert not started
    assert info.value.reason == "file too large (2000 MB, limit 1 MB)"


async def test_too_large_streamed_stops_reading(store: MediaStore, tmp_path: Path) -> None:
    read = 0
    closed = False

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal read, closed
        try:
            for _ in range(100):
                read += 1
                yield b"\0" * 300_000
        finally:
            closed = True

    with pytest.raises(FileTooLarge) as info:
        await store.put(chunks(), name="big.bin")
    assert read == 4 and closed
    assert info.value.reason == "file too large (1.2 MB, limit 1 MB)"
    assert store.stats().files == 0 and not list((store.root / ".incoming").iterdir())


@pytest.mark.parametrize(
    ("size", "text"), [(25_300_000, "25.3"), (20_000_000, "20"), (1_049_999, "1")]
)
def test_megabytes(size: int, text: str) -> None:
    assert megabytes(size) == text


async def test_empty_file(store: MediaStore) -> None:
    with pytest.raises(EmptyFile) as info:
        await store.put_bytes(b"", name="empty.txt")
    assert info.value.reason == "empty file"


async def test_bytes_that_do_not_match_the_name(store: MediaStore) -> None:
    with pytest.raises(ContentMismatch) as info:
        await store.put_bytes(b"MZ\x90\x00" + b"\0" * 100, name="holiday.png")
    assert info.value.reason.startswith("content does not match its name")
    with pytest.raises(ContentMismatch):
        await store.put_bytes(samples.png(), name="notes.txt")
    assert store.stats().files == 0


async def test_undecodable_image(store: MediaStore) -> None:
    broken = samples.png()[:60]
    with pytest.raises(NotAnImage) as info:
        await store.put_bytes(broken, name="broken.png")
    assert info.value.reason.startswith("not a valid image")
    assert store.stats().files == 0


@pytest.mark.parametrize("name", ["../../etc/passwd", "a/b.txt", "..\\x.txt", "..", "a\x00b"])
async def test_path_in_the_name_is_refused(store: MediaStore, tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafeName) as info:
        await store.put_bytes(b"root:x:0:0", name=name)
    assert info.value.reason.startswith("unsafe file name")
    assert outside(tmp_path, store) == [] and store.stats().files == 0


def test_safe_name_cleans_control_characters() -> None:
    assert safe_name("  .hidden\x07 notes.md ") == "hidden notes.md"
    assert safe_name(None) == "file"
    assert len(safe_name("x" * 300 + ".pdf")) == 120 and safe_name("x" * 300 + ".pdf").endswith(
        ".pdf"
    )


@pytest.mark.parametrize("media_id", ["../outbox.db", "A" * 64, "0" * 63, "", "0" * 64])
def test_path_never_leaves_the_store(store: MediaStore, media_id: str) -> None:
    with pytest.raises(MediaNotFound):
        store.path(media_id)


async def test_janitor_removes_expired_files(store: MediaStore) -> None:
    clock = store.clock
    assert isinstance(clock, Clock)
    old = await store.put_bytes(b"old text", name="old.txt")
    clock.now += 60
    new = await store.put_bytes(b"new text", name="new.txt")
    clock.now += 50
    assert store.sweep() == 1
    with pytest.raises(MediaNotFound):
        store.path(old.id or "")
    assert store.path(new.id or "").is_file()


async def test_open_drops_half_written_files(tmp_path: Path) -> None:
    incoming = tmp_path / "media" / ".incoming"
    incoming.mkdir(parents=True)
    (incoming / "partial").write_bytes(b"x")
    MediaStore(tmp_path / "media").open()
    assert list(incoming.iterdir()) == []


async def test_daemons_sharing_a_folder_keep_their_half_written_files_apart(
    tmp_path: Path,
) -> None:
    # media.dir in cluster mode: a file one node stored is read by another; a node starting
    # clears only its own leftovers, never a file another node is receiving.
    a = MediaStore(tmp_path / "shared", writer="node-a")
    b = MediaStore(tmp_path / "shared", writer="node-b")
    a.open()
    receiving = tmp_path / "shared" / ".incoming" / "node-a" / "partial"
    receiving.write_bytes(b"x")
    b.open()
    assert receiving.exists()
    stored = await a.put_bytes(b"hello from a", name="a.txt")
    assert await b.read(stored.id or "") == b"hello from a"
    assert a.stats().files == b.stats().files == 1
    a.open()
    assert not receiving.exists()


async def test_stream_reads_back_in_chunks(store: MediaStore) -> None:
    data = bytes(range(256)) * 3000
    a = await store.put_bytes(data, name="blob.bin")
    got = b"".join([c async for c in store.stream(a.id or "")])
    assert got == data


def test_sniff_text_and_pdf() -> None:
    assert sniff(b"a,b\n1,2\n", "t.csv").family == "text"
    assert sniff(samples.pdf(), "x.pdf").mime == "application/pdf"
    assert sniff(b"\x00\x01\x02", "").mime == "application/octet-stream"


async def test_extract_text_of_pdf_and_text(store: MediaStore) -> None:
    a = await store.put_bytes(samples.pdf("Quarterly numbers"), name="q.pdf")
    assert "Quarterly numbers" in (extract_text(store.path(a.id or ""), a.mime, 1000) or "")
    b = await store.put_bytes(("é" * 50).encode(), name="long.md")
    text = extract_text(store.path(b.id or ""), b.mime, 10)
    assert text == "é" * 10 + "\n[… truncated]"
    c = await store.put_bytes(samples.png(), name="p.png")
    assert extract_text(store.path(c.id or ""), c.mime, 10) is None


async def test_data_url_downscales_large_images(store: MediaStore) -> None:
    big = await store.put_bytes(samples.png(3000, 1000), name="wide.png")
    small = await store.put_bytes(samples.png(800, 600), name="small.png")
    url = images.data_url(store.path(big.id or ""), big.mime)
    assert url.startswith("data:image/jpeg;base64,")
    import base64
    import io

    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as img:
        assert img.size == (images.VISION_LONG_SIDE, round(1000 * images.VISION_LONG_SIDE / 3000))
    assert images.data_url(store.path(small.id or ""), small.mime).startswith("data:image/png;")


def test_attachment_json_ignores_unknown_keys() -> None:
    from picobot.core.messages import Attachment

    a = Attachment(AttachmentKind.VOICE, "v.ogg", "audio/ogg", 10, "0" * 64)
    assert Attachment.from_json(a.to_json() | {"duration": 3}) == a


async def test_large_jpeg_keeps_its_full_pixel_size(store: MediaStore) -> None:
    a = await store.put_bytes(samples.jpeg(4000, 3000), name="big.jpg")
    assert (a.width, a.height) == (4000, 3000)
    broken = samples.jpeg(4000, 3000)
    with pytest.raises(NotAnImage):
        await store.put_bytes(broken[: len(broken) // 3] + b"\0" * 10, name="cut.jpg")
