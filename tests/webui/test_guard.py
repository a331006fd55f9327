"""The HTTP guard: Host, Origin and Content-Type checks, the token on every /api/* call, and
JSON 4xx answers for bad bytes (never a 500 or a traceback)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from picobot.agent.demo import DemoLLM
from picobot.config import parse_config
from picobot.runtime.daemon import Daemon

TOKEN = "a-web-token-of-16+"
TIMEOUT = 10.0


@asynccontextmanager
async def daemon(tmp_path: Path, **config: Any) -> AsyncIterator[Daemon]:
    data = {"http": {"port": 0}, "data_dir": str(tmp_path), **config}
    async with Daemon(parse_config(data, env={}), llm=DemoLLM(delay=0)) as d:
        yield d


async def request(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    raw_headers: bytes = b"",
) -> tuple[int, dict[str, str], Any]:
    """One HTTP/1.1 request as raw bytes (clients refuse to send some of what we test)."""
    head = {"Host": f"127.0.0.1:{port}", "Connection": "close", **(headers or {})}
    if body:
        head["Content-Length"] = str(len(body))
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in head.items())]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write("\r\n".join(lines).encode() + b"\r\n" + raw_headers + b"\r\n" + body)
        async with asyncio.timeout(TIMEOUT):
            response = await reader.read()
    finally:
        writer.close()
    head_bytes, _, payload = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    fields = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    parsed = json.loads(payload) if "json" in fields.get("content-type", "") else payload
    return int(status_line.split()[1]), fields, parsed


JSON = {"Content-Type": "application/json"}
HELLO = json.dumps({"text": "hello"}).encode()


async def test_cross_site_posts_are_refused(tmp_path: Path) -> None:
    async with daemon(tmp_path) as d:
        # What a page on another site can send without a preflight: text/plain, a form.
        forms = ("application/x-www-form-urlencoded", "multipart/form-data; boundary=b")
        for kind in ("text/plain", *forms):
            status, _, body = await request(
                d.port, "POST", "/api/messages", HELLO, {"Content-Type": kind}
            )
            assert (status, body) == (415, {"error": "Content-Type must be application/json"})
        evil = {**JSON, "Origin": "http://evil.example"}
        status, _, body = await request(d.port, "POST", "/api/messages", HELLO, evil)
        assert (status, body) == (403, {"error": "cross-origin request refused"})
        own = {**JSON, "Origin": f"http://127.0.0.1:{d.port}"}
        status, _, body = await request(d.port, "POST", "/api/messages", HELLO, own)
        assert status == 202 and body["run_id"]


async def test_only_loopback_or_configured_host_names_are_served(tmp_path: Path) -> None:
    async with daemon(tmp_path, http={"port": 0, "allowed_hosts": ["bot.example"]}) as d:
        for path in ("/", "/api/sessions/s/messages", "/api/status"):
            status, _, body = await request(d.port, "GET", path, headers={"Host": "rebind.evil"})
            assert status == 403, path
            assert "unexpected Host header" in body["error"]
        for host in (f"localhost:{d.port}", f"[::1]:{d.port}", "bot.example", "BOT.example:80"):
            status, _, _ = await request(d.port, "GET", "/api/status", headers={"Host": host})
            assert status == 200, host
        status, _, _ = await request(d.port, "GET", "/healthz", headers={"Host": "any.where"})
        assert status == 200  # probes and webhooks are not browser-facing


async def test_status_needs_the_token_even_with_the_web_chat_disabled(tmp_path: Path) -> None:
    web = {"enabled": False, "token": TOKEN}
    async with daemon(tmp_path, channels={"web": web}) as d:
        status, _, body = await request(d.port, "GET", "/api/status")
        assert (status, body) == (401, {"error": "a valid token is required"})
        auth = {"Authorization": f"Bearer {TOKEN}"}
        status, _, body = await request(d.port, "GET", "/api/status", headers=auth)
        assert status == 200 and "uptime" in body


async def test_bad_bytes_get_a_json_4xx_and_no_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with daemon(tmp_path, channels={"web": {"token": TOKEN}}) as d:
        auth = {**JSON, "Authorization": f"Bearer {TOKEN}"}
        post = "POST", "/api/messages"
        status, _, body = await request(d.port, *post, b'{"text": "x\\ud800y"}', auth)
        assert status == 400 and "Unicode" in body["error"]
        status, _, body = await request(d.port, *post, b"[" * 100_000, auth)
        assert status == 400 and body["error"]
        # Not Latin-1 (UTF-8 bytes of "tökén"): a wrong token, not a crash.
        wrong = b"Authorization: Bearer t\xc3\xb6k\xc3\xa9n\r\n"
        status, _, body = await request(d.port, "GET", "/api/status", raw_headers=wrong)
        assert (status, body) == (401, {"error": "a valid token is required"})
        huge = b'{"text": "' + b"x" * (2 << 20) + b'"}'
        status, _, body = await request(d.port, *post, huge, auth)
        assert status == 413 and body == {"error": "the body is too large"}
        status, _, _ = await request(d.port, "GET", "/api/status?" + "a" * 20_000, headers=auth)
        assert 400 <= status < 500
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
