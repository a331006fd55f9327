"""Idle and half-open HTTP connections cannot exhaust the daemon's file descriptors."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from picobot.agent.demo import DemoLLM
from picobot.config import parse_config
from picobot.runtime import server as server_module
from picobot.runtime.daemon import Daemon
from tests.ops.helpers import Daemon as Process
from tests.ops.helpers import write_config

TIMEOUT = 10.0


async def healthz(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        async with asyncio.timeout(TIMEOUT):
            answer = await reader.read()
    finally:
        writer.close()
    return int(answer.split()[1])


async def test_half_open_connections_beyond_the_fd_limit_leave_healthz_answering(
    tmp_path: Path,
) -> None:
    # A hard limit of 128 descriptors it cannot raise; 150 connections that never finish
    # their request header. Without the cap, accept() runs out of descriptors.
    config = write_config(tmp_path / "config.yaml", tmp_path / "data")
    daemon = Process(config, fd_limit=(128, 128))
    writers: list[asyncio.StreamWriter] = []
    try:
        daemon.wait_for(r" ready: ")
        for _ in range(150):
            _, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
            writer.write(b"GET /healthz HTTP/1.1\r\n")
            writers.append(writer)
        await asyncio.gather(*(w.drain() for w in writers))
        assert await healthz(daemon.port) == 200
    finally:
        for writer in writers:
            writer.close()
        code = daemon.stop()
    assert code == 0
    log = "\n".join(daemon.lines)
    assert len(re.findall(r"connections open \(the cap\)", log)) == 1, log  # once, not per accept
    assert "Traceback" not in log and "out of system resource" not in log


def test_the_soft_fd_limit_is_raised_to_the_hard_one(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", tmp_path / "data")
    daemon = Process(config, fd_limit=(128, 512))
    try:
        daemon.wait_for(r"open-file limit raised from 128 to 512")
        daemon.wait_for(r" ready: ")
        limits = Path(f"/proc/{daemon.proc.pid}/limits").read_text()
        assert re.search(r"Max open files\s+512\s+512", limits), limits
    finally:
        assert daemon.stop() == 0


async def test_a_connection_without_a_request_header_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "HEADER_TIMEOUT", 0.2)
    config = parse_config({"http": {"port": 0}, "data_dir": str(tmp_path)}, env={})
    async with Daemon(config, llm=DemoLLM(delay=0)) as d:
        reader, writer = await asyncio.open_connection("127.0.0.1", d.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and nothing more
        async with asyncio.timeout(TIMEOUT):
            assert await reader.read() == b""  # closed by the server
        writer.close()
        # A whole request still works on a fresh connection.
        assert await healthz(d.port) == 200


async def test_at_the_cap_requests_in_progress_stay_and_a_newcomer_gets_503(
    tmp_path: Path,
) -> None:
    config = parse_config({"http": {"port": 0}, "data_dir": str(tmp_path)}, env={})
    async with Daemon(config, llm=DemoLLM(delay=5)) as d:  # a run that streams for long
        reader, writer = await asyncio.open_connection("127.0.0.1", d.port)
        body = json.dumps({"text": "hi"}).encode()
        writer.write(
            b"POST /api/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        async with asyncio.timeout(TIMEOUT):
            run_id = json.loads((await reader.read()).partition(b"\r\n\r\n")[2])["run_id"]
        writer.close()
        d.http.limit.cap = 1
        stream_reader, stream = await asyncio.open_connection("127.0.0.1", d.port)
        stream.write(f"GET /api/runs/{run_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        async with asyncio.timeout(TIMEOUT):
            await stream_reader.readuntil(b"retry: 2000")  # streaming: in a request
            newcomer, other = await asyncio.open_connection("127.0.0.1", d.port)
            answer = await newcomer.read()
        other.close()
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert b'"too many open connections"' in answer
        assert not stream.is_closing() and not stream_reader.at_eof()
        stream.close()
