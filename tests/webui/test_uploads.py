"""Web chat files: multipart POST /api/messages, GET /api/media/{id} behind the token."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from picobot.config import parse_config
from picobot.runtime.daemon import Daemon
from tests.fakes.fake_openai import FakeOpenAI, Reply, ToolCall
from tests.media import samples
from tests.webui.conftest import Running, StartDaemon, read_events

TOKEN = "s3cret-web-token"
PAGE = {"X-Picobot": "web"}  # what the page sends: a form from another site cannot
AUTH = {"Authorization": f"Bearer {TOKEN}", **PAGE}


def form(text: str, *files: tuple[str, bytes], session: str | None = None) -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("text", text)
    if session:
        data.add_field("session", session)
    for name, content in files:
        data.add_field("files", content, filename=name, content_type="application/octet-stream")
    return data


async def post_form(d: Running, data: aiohttp.FormData, status: int = 202) -> dict[str, object]:
    async with d.http.post(d.base + "/api/messages", data=data, headers=AUTH) as r:
        assert r.status == status, await r.text()
        body: dict[str, object] = await r.json()
        return body


async def test_upload_reaches_the_model_and_is_served(start_daemon: StartDaemon) -> None:
    image = samples.png(120, 80)
    async with start_daemon(web={"token": TOKEN}) as d:
        before = (await d.daemon.status())["media"]
        result = await post_form(d, form("what is it?", ("pic.png", image)))
        events = await d.events(str(result["run_id"]), headers=AUTH)
        final = next(e for e in events if e.event == "turn_finished").data["text"]
        assert "image: pic.png (image, image/png" in final and "120×80 px" in final
        assert "1 image shown to me as pixels" in final
        [attachment] = result["attachments"]  # type: ignore[misc]
        url = d.base + attachment["url"]
        async with d.http.get(url) as r:
            assert r.status == 401  # behind the token
        async with d.http.get(url, headers=AUTH) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "image/png"
            assert await r.read() == image
        async with d.http.get(url + f"?token={TOKEN}") as r:  # what an <img> can send
            assert r.status == 200
        session = str(result["session"])
        async with d.http.get(f"{d.base}/api/sessions/{session}/messages", headers=AUTH) as r:
            history = await r.json()
        assert history[0]["attachments"][0]["url"] == attachment["url"]
        after = (await d.daemon.status())["media"]
        assert (after["files"], after["bytes"]) == (1, len(image))  # type: ignore[index]
        assert after["received"] == before["received"] + 1  # type: ignore[index]
        async with d.http.get(d.base + "/metrics") as r:
            assert "picobot_media_stored_bytes_total" in await r.text()


async def test_refused_files_are_named_and_the_message_goes_on(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    async with start_daemon(web={"token": TOKEN}) as d:
        result = await post_form(
            d,
            form(
                "see these",
                ("../../etc/passwd", b"root:x:0:0"),
                ("empty.txt", b""),
                ("cat.png", b"MZ\x90\x00" + b"\0" * 64),
                ("notes.md", b"# Notes\nbuy milk"),
            ),
        )
        reasons = {r["name"]: r["reason"] for r in result["rejected"]}  # type: ignore[attr-defined]
        assert reasons["../../etc/passwd"].startswith("unsafe file name")
        assert reasons["empty.txt"] == "empty file"
        assert reasons["cat.png"].startswith("content does not match its name")
        events = await d.events(str(result["run_id"]), headers=AUTH)
        final = next(e for e in events if e.event == "turn_finished").data["text"]
        assert "file: notes.md (file, text/markdown" in final
    assert not (tmp_path.parent / "etc").exists()
    stored = [p.name for p in (tmp_path / "media").iterdir() if p.is_file()]
    assert len(stored) == 1  # only notes.md


async def test_only_refused_files_is_a_400_with_the_reason(start_daemon: StartDaemon) -> None:
    async with start_daemon() as d:
        empty = form("", ("e.txt", b""))
        async with d.http.post(d.base + "/api/messages", data=empty, headers=PAGE) as r:
            assert r.status == 400
            assert (await r.json())["error"] == "e.txt: empty file"


async def test_media_ids_outside_the_store_are_404(start_daemon: StartDaemon) -> None:
    async with start_daemon() as d:
        for media_id in ("..%2Foutbox.db", "sessions.db", "0" * 64):
            async with d.http.get(f"{d.base}/api/media/{media_id}") as r:
                assert r.status == 404


async def test_html_is_served_as_a_download(start_daemon: StartDaemon) -> None:
    async with start_daemon() as d:
        html = b"<html><script>alert(1)</script></html>"
        result = await post_form(d, form("x", ("page.html", html)))
        [attachment] = result["attachments"]  # type: ignore[misc]
        async with d.http.get(d.base + attachment["url"]) as r:
            assert r.headers["Content-Type"] == "application/octet-stream"
            assert r.headers["Content-Disposition"].startswith("attachment")


async def test_json_form_still_works(start_daemon: StartDaemon) -> None:
    async with start_daemon() as d:
        result = await d.post("plain text")
        events = await d.events(result["run_id"])
        assert any(e.event == "turn_finished" for e in events)


async def test_generated_image_reaches_the_page(tmp_path: Path) -> None:
    async with FakeOpenAI() as openai:
        openai.script(
            Reply(tool_calls=[ToolCall("generate_image", {"prompt": "a boat", "size": "64x32"})]),
            Reply(text="A boat."),
        )
        llm = {"provider": "openai", "base_url": openai.base_url, "api_key": openai.api_key}
        config = parse_config(
            {
                "http": {"port": 0},
                "data_dir": str(tmp_path),
                "llm": llm,
                "images": {"enabled": True},
            },
            env={},
        )
        async with Daemon(config) as daemon, aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{daemon.port}"
            async with http.post(base + "/api/messages", json={"text": "draw"}) as r:
                run_id = (await r.json())["run_id"]
            async with http.get(f"{base}/api/runs/{run_id}/events") as r:
                events = await read_events(r)
            [shown] = [e.data for e in events if e.event == "attachment"]
            assert (shown["kind"], shown["width"], shown["height"]) == ("image", 64, 32)
            async with http.get(base + shown["url"]) as r:
                assert r.status == 200 and r.headers["Content-Type"] == "image/png"


async def test_form_limits(start_daemon: StartDaemon) -> None:
    async with start_daemon() as d:
        many = form("x", *[(f"f{i}.txt", b"hi") for i in range(11)])
        async with d.http.post(d.base + "/api/messages", data=many, headers=PAGE) as r:
            assert r.status == 400
            assert (await r.json())["error"] == "at most 10 files per message"
        long = aiohttp.FormData()
        long.add_field("session", "s" * 300_000)
        long.add_field("files", b"hi", filename="a.txt")
        async with d.http.post(d.base + "/api/messages", data=long, headers=PAGE) as r:
            assert r.status == 400
            assert (await r.json())["error"] == "the field 'session' is too long"
