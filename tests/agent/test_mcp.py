"""The MCP client against a real MCP server written with the SDK (tests/fakes/mcp_server.py),
over stdio (a child process) and streamable HTTP (127.0.0.1), driven by the real OpenAI SDK
against the fake server, which scripts the model's tool calls."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from picobot.agent.mcp import McpManager
from picobot.agent.mcp import server as mcp_server
from picobot.agent.mcp.results import tool_name
from picobot.agent.mcp.server import McpServer
from picobot.agent.tools import ToolContext, ToolRegistry, time_tool
from picobot.config import McpServerConfig
from picobot.core.errors import ConfigError
from tests.agent.conftest import MakeAgent, collect, text_of
from tests.fakes.fake_openai import FakeOpenAI, Reply, ToolCall

SERVER = str(Path(__file__).resolve().parents[1] / "fakes" / "mcp_server.py")
WAIT = 30.0  # a Python child importing the SDK takes a second or two on a busy machine
TOKEN = "s3cret-token"


def stdio(**overrides: Any) -> McpServerConfig:
    return McpServerConfig(**({"command": (sys.executable, SERVER), "timeout": 20} | overrides))


async def until(server: McpServer, predicate: Callable[[McpServer], bool]) -> None:
    try:
        async with asyncio.timeout(WAIT):
            await server.wait_for(predicate)
    except TimeoutError:
        raise AssertionError(f"mcp server {server.name}: {server.status()}") from None


def connected(server: McpServer) -> bool:
    return server.state == "connected"


@pytest.fixture
async def manager() -> AsyncIterator[Callable[..., McpManager]]:
    made: list[McpManager] = []

    def make(registry: ToolRegistry | None = None, **servers: McpServerConfig) -> McpManager:
        m = McpManager(servers, registry if registry is not None else ToolRegistry())
        m.start()
        made.append(m)
        return m

    yield make
    for m in made:
        await m.aclose()


@pytest.fixture
async def http_url() -> AsyncIterator[str]:
    """The test server over streamable HTTP on 127.0.0.1 (a free port), with a bearer token."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        SERVER,
        "--http",
        env={**os.environ, "MCP_TEST_TOKEN": TOKEN},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    async with asyncio.timeout(WAIT):
        line = (await proc.stdout.readline()).decode()
    match = re.match(r"PORT (\d+)", line)
    assert match, line
    yield f"http://127.0.0.1:{match[1]}/mcp"
    proc.terminate()
    await proc.wait()


async def test_stdio_tools_reach_the_model_with_text_and_images(
    fake: FakeOpenAI, make_agent: MakeAgent, manager: Callable[..., McpManager]
) -> None:
    registry = ToolRegistry([time_tool()])
    files = manager(registry, files=stdio()).servers["files"]
    await until(files, connected)
    assert {"files__echo", "files__pixel", "files__add"} <= set(registry.names())
    agent = await make_agent(tools=registry)
    fake.script(
        Reply(tool_calls=[ToolCall("files__echo", {"text": "hi"}), ToolCall("files__pixel")]),
        Reply(text="Done."),
    )
    events = await collect(agent.run_turn("s", "use the tools"))
    assert text_of(events) == "Done."
    offered = {t["function"]["name"]: t["function"] for t in fake.requests[0]["tools"]}
    assert offered["files__echo"]["parameters"]["properties"]["text"]["type"] == "string"
    *_, echo, pixel, images = fake.requests[1]["messages"]
    assert (echo["role"], echo["content"]) == ("tool", "echo: hi")
    assert pixel["role"] == "tool" and pixel["content"].startswith("a pixel\n[image 1: image/png")
    assert images["role"] == "user"
    urls = [p["image_url"]["url"] for p in images["content"] if p["type"] == "image_url"]
    assert len(urls) == 1 and urls[0].startswith("data:image/png;base64,iVBOR")
    # The next turn's history keeps a note, not the image's bytes.
    fake.script(Reply(text="Again."))
    await collect(agent.run_turn("s", "and now?"))
    stored = fake.requests[2]["messages"]
    assert "base64" not in str(stored) and "not kept in the history" in str(stored)


async def test_streamable_http_with_headers(
    http_url: str, manager: Callable[..., McpManager]
) -> None:
    registry = ToolRegistry()
    m = manager(
        registry,
        search=McpServerConfig(url=http_url, headers={"Authorization": f"Bearer {TOKEN}"}),
        nokey=McpServerConfig(url=http_url),
    )
    await until(m.servers["search"], connected)
    result = await registry.call("search__add", '{"a": 2, "b": 3}', ToolContext("s"))
    assert (result.content, result.error) == ("5", False)
    await until(m.servers["nokey"], lambda s: s.state == "failed")
    assert "nokey__add" not in registry
    status = m.status()
    assert status["search"]["state"] == "connected" and "search__add" in status["search"]["tools"]
    assert status["nokey"]["error"]  # says why (the 401), for /api/status


async def test_misbehaving_tools_give_error_results_and_the_server_goes_on(
    manager: Callable[..., McpManager], caplog: pytest.LogCaptureFixture
) -> None:
    registry = ToolRegistry()
    m = manager(registry, q=stdio(timeout=0.5), t=stdio())
    quick, patient = m.servers["q"], m.servers["t"]
    await until(quick, connected)
    await until(patient, connected)
    ctx = ToolContext("s")
    hung = await registry.call("q__hang", "{}", ctx)
    assert hung.error and hung.content == "Error: q__hang did not answer within 0.5 s"
    assert quick.state == "connected"  # a slow tool is not a dead server
    broken = await registry.call("t__fail", "{}", ctx)
    assert broken.error and broken.content.startswith("Error: ")
    with caplog.at_level(logging.INFO, "picobot.mcp"):
        fine = await registry.call("t__garbage", "{}", ctx)  # garbage on its stdout first
        assert (fine.content, fine.error) == ("fine", False)
        echo = await registry.call("t__echo", '{"text": "ok"}', ctx)
    assert echo.content == "echo: ok" and patient.state == "connected"
    assert "mcp t: echo called with 2 characters" in caplog.text  # its stderr, line by line


async def test_garbage_on_the_protocol_stream_is_one_log_line_and_ignored(
    manager: Callable[..., McpManager], caplog: pytest.LogCaptureFixture
) -> None:
    # The server's first stdout line is not JSON-RPC; then the real server takes over.
    code = (
        "import os, sys; os.write(1, b'garbage, not JSON\\n'); "
        f"os.execv(sys.executable, [sys.executable, {SERVER!r}])"
    )
    registry = ToolRegistry()
    with caplog.at_level(logging.INFO):
        noisy = manager(registry, n=stdio(command=(sys.executable, "-c", code))).servers["n"]
        await until(noisy, connected)
    result = await registry.call("n__echo", '{"text": "ok"}', ToolContext("s"))
    assert (result.content, result.error) == ("echo: ok", False)
    (line,) = [r for r in caplog.records if r.name == "mcp.client.stdio"]
    assert line.exc_info is None and "garbage" not in line.getMessage()
    assert "Failed to parse JSONRPC message" in line.getMessage()


async def test_a_huge_result_is_truncated(manager: Callable[..., McpManager]) -> None:
    registry = ToolRegistry()
    await until(manager(registry, big=stdio(timeout=60)).servers["big"], connected)
    result = await registry.call("big__huge", "{}", ToolContext("s"))
    assert not result.error and result.content.endswith("[result truncated]")
    assert len(result.content) < 20_000


async def test_a_server_that_exits_during_a_call_is_restarted(
    manager: Callable[..., McpManager], caplog: pytest.LogCaptureFixture
) -> None:
    registry = ToolRegistry()
    crashy = manager(registry, c=stdio()).servers["c"]
    await until(crashy, connected)
    with caplog.at_level(logging.WARNING, "picobot.mcp"):
        result = await registry.call("c__crash", "{}", ToolContext("s"))
        assert result.error and "went away" in result.content
        await until(crashy, lambda s: s.attempts >= 2 and connected(s))
    assert caplog.text.count("mcp server c failed") == 1
    again = await registry.call("c__echo", '{"text": "back"}', ToolContext("s"))
    assert again.content == "echo: back"


async def test_a_server_that_cannot_start_warns_once_and_blocks_nothing(
    manager: Callable[..., McpManager],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mcp_server, "FIRST_RETRY", 0.01)
    monkeypatch.setattr(mcp_server, "MAX_RETRY", 0.02)
    registry = ToolRegistry()
    with caplog.at_level(logging.WARNING, "picobot.mcp"):
        m = manager(registry, broken=stdio(command=("/nonexistent/mcp-server",)), ok=stdio())
        await until(m.servers["broken"], lambda s: s.attempts >= 4)
        await until(m.servers["ok"], connected)
    assert caplog.text.count("mcp server broken failed") == 1  # one WARNING per episode
    status = m.status()["broken"]
    assert status["state"] in ("failed", "starting") and "nonexistent" in (status["error"] or "")
    assert "ok__echo" in registry


async def test_allow_list_disabled_and_status(manager: Callable[..., McpManager]) -> None:
    registry = ToolRegistry()
    m = manager(registry, some=stdio(tools=("echo", "add")), off=stdio(enabled=False))
    await until(m.servers["some"], connected)
    assert sorted(registry.names()) == ["some__add", "some__echo"]
    assert m.status()["off"] == {"state": "disabled", "tools": [], "error": None}


async def test_stopping_ends_the_child_process(
    manager: Callable[..., McpManager], tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    m = manager(ToolRegistry(), p=stdio(env={"MCP_TEST_PIDFILE": str(pidfile)}))
    await until(m.servers["p"], connected)
    pid = int(pidfile.read_text())
    os.kill(pid, 0)  # alive
    await m.aclose()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert m.status()["p"]["state"] == "stopped"


async def test_reload_restarts_only_changed_servers(manager: Callable[..., McpManager]) -> None:
    registry = ToolRegistry()
    m = manager(registry, a=stdio(), b=stdio())
    a, b = m.servers["a"], m.servers["b"]
    await until(a, connected)
    await until(b, connected)
    applied = await m.reload({"a": stdio(), "b": stdio(tools=("echo",)), "c": stdio()})
    assert applied == ["mcp b: restarted", "mcp c: restarted"]
    assert m.servers["a"] is a and m.servers["b"] is not b
    await until(m.servers["b"], connected)
    assert [n for n in registry.names() if n.startswith("b__")] == ["b__echo"]
    assert await m.reload({}) == ["mcp a: stopped", "mcp b: stopped", "mcp c: stopped"]
    assert registry.names() == []


def test_tool_names_fit_openai_and_do_not_collide() -> None:
    pattern = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
    names = {
        tool_name("files", "read_file"),
        tool_name("files", "read.file"),
        tool_name("files", "read file"),
        tool_name("server-with-a-long-name", "x" * 80),
        tool_name("server-with-a-long-name", "x" * 81),
    }
    assert tool_name("files", "read_file") == "files__read_file"
    assert len(names) == 5 and all(pattern.match(n) for n in names)


def test_config_needs_exactly_one_transport() -> None:
    from picobot.config import parse_config

    with pytest.raises(ConfigError, match=r"mcp\.servers\.x\.command"):
        parse_config({"mcp": {"servers": {"x": {"command": ["a"], "url": "http://h/mcp"}}}})
    with pytest.raises(ConfigError, match=r"mcp\.servers\.x\.url"):
        parse_config({"mcp": {"servers": {"x": {"url": "ftp://h/mcp"}}}})
    with pytest.raises(ConfigError, match="invalid server name"):
        parse_config({"mcp": {"servers": {"a.b": {"command": ["a"]}}}})


class LogEvent(logging.Handler):
    """Sets `event` when a record containing `needle` is logged (in the loop's thread)."""

    def __init__(self, needle: str) -> None:
        super().__init__(logging.DEBUG)
        self.needle = needle
        self.event = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.event.set()


async def test_stopping_a_server_that_never_answers_does_not_wait_for_its_start(
    manager: Callable[..., McpManager], tmp_path: Path
) -> None:
    # A "server" that says so on stderr, then reads its stdin and never answers the handshake.
    pidfile = tmp_path / "pid"
    code = (
        f"import os, sys; open({str(pidfile)!r}, 'w').write(str(os.getpid()));"
        " print('listening', file=sys.stderr, flush=True); sys.stdin.read()"
    )
    seen = LogEvent("mcp mute: listening")
    logger = logging.getLogger("picobot.mcp")
    logger.addHandler(seen)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        m = manager(ToolRegistry(), mute=stdio(command=(sys.executable, "-c", code)))
        async with asyncio.timeout(WAIT):
            await seen.event.wait()
    finally:
        logger.removeHandler(seen)
        logger.setLevel(level)
    assert m.servers["mute"].state == "starting"
    async with asyncio.timeout(15):  # well under the 60 s start timeout
        await m.aclose()
    with pytest.raises(ProcessLookupError):
        os.kill(int(pidfile.read_text()), 0)
