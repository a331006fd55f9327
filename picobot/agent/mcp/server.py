"""One MCP server, supervised: connect, offer its tools, watch it, reconnect with backoff.

    start ─► connect (stdio child or streamable HTTP) ─► initialize ─► list tools ─► register
          ◄── backoff 1 s, 2 s, 4 s … 30 s ◄── failure / death (ping or a call that broke)

The first failure of an episode is one WARNING; retries log at DEBUG. An episode ends when
the server has stayed up for `STABLE` seconds: then the next crash retries after 1 s again.
A stdio server runs in its own process group (the SDK's `stdio_client`); closing the
connection stops it (stdin closed, then SIGTERM, then SIGKILL to the group), and a daemon
killed outright closes its stdin, which ends a well-behaved server. Its stderr goes to our
log, line by line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any, TextIO

import httpx2
import mcp_types as types
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from picobot.agent.mcp.results import to_result, tool_name
from picobot.agent.tools import Tool, ToolContext, ToolResult
from picobot.config import McpServerConfig

log = logging.getLogger("picobot.mcp")

FIRST_RETRY = 1.0
MAX_RETRY = 30.0
STABLE = 30.0  # seconds up before a failure counts as a new episode (and backoff resets)
PING_INTERVAL = 5.0  # how often a connected server is checked
START_TIMEOUT = 60.0  # seconds to start, initialize and list tools (`timeout` is per call)
PING_TIMEOUT = 10.0
MAX_STDERR_LINE = 500

Register = Callable[[Tool], None]
Unregister = Callable[[str], None]


class _OneLine(logging.Filter):
    """The SDK logs a server's non-JSON stdout line with a traceback quoting the line; we log
    one line saying what happened, without the server's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info is not None:
            exc = record.exc_info[1]
            message = record.getMessage()
            record.msg = "%s (%s); line ignored"
            record.args = (message, type(exc).__name__ if exc else "error")
            record.exc_info = None
            record.exc_text = None
        return True


logging.getLogger("mcp.client.stdio").addFilter(_OneLine())


class ServerGone(Exception):
    """The connection ended (the process exited, a ping or a call failed)."""


def describe(exc: BaseException) -> str:
    """One line for the log and /api/status: the innermost error of an exception group."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class McpServer:
    """Supervises one configured server; `status()` for /api/status."""

    def __init__(
        self,
        name: str,
        config: McpServerConfig,
        register: Register,
        unregister: Unregister,
    ) -> None:
        self.name = name
        self.config = config
        self._register = register
        self._unregister = unregister
        self._state = "starting"
        self._changed = asyncio.Event()
        self.error: str | None = None
        self.tools: list[str] = []
        self._session: ClientSession | None = None
        self._stop = asyncio.Event()
        self._gone = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.attempts = 0  # connection attempts so far (tests and status)

    @property
    def state(self) -> str:
        """starting | connected | failed | stopped."""
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        self._state = value
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[McpServer], bool]) -> None:
        """Wait until `predicate(self)` holds (re-checked at every state change)."""
        while not predicate(self):
            await self._changed.wait()

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "tools": list(self.tools), "error": self.error}

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name=f"mcp {self.name}")

    async def stop(self, timeout: float = 10.0) -> None:
        """Close the connection (and stop a stdio server); never raises."""
        self._stop.set()
        if self._task is None:
            return
        if self.state == "starting":  # it may wait on a slow server for a minute: cut it
            self._task.cancel()  # (the SDK's shielded shutdown still stops the child)
        done, _ = await asyncio.wait({self._task}, timeout=timeout)
        if not done:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        self._clear()
        self.state = "stopped"

    # -- supervision --------------------------------------------------------------------------

    async def _supervise(self) -> None:
        delay = FIRST_RETRY
        failing = False
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            self.state = "starting"
            started = loop.time()
            self.attempts += 1
            try:
                await self._connect_once()
                if self._stop.is_set():
                    break
                raise ServerGone("the server went away")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.error = describe(exc)
            finally:
                self._clear()
            if loop.time() - started >= STABLE:  # it was up long enough: a new episode
                failing, delay = False, FIRST_RETRY
            self.state = "failed"
            if not failing:
                log.warning("mcp server %s failed: %s; retrying", self.name, self.error)
                failing = True
            else:
                log.debug("mcp server %s failed again: %s", self.name, self.error)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()
            delay = min(delay * 2, MAX_RETRY)
        self.state = "stopped"

    async def _connect_once(self) -> None:
        async with AsyncExitStack() as stack:
            read, write = await stack.enter_async_context(self._transport())
            session = await stack.enter_async_context(ClientSession(read, write))
            async with asyncio.timeout(max(START_TIMEOUT, self.config.timeout)):
                await session.initialize()
                listed = await self._list_tools(session)
            self._session = session
            self._gone.clear()
            self._offer(listed)
            self.state, self.error = "connected", None
            log.info("mcp server %s: connected, %d tools", self.name, len(self.tools))
            await self._watch(session)

    def _transport(self) -> contextlib.AbstractAsyncContextManager[Any]:
        if self.config.command is not None:
            return self._stdio()
        return self._http()

    @contextlib.asynccontextmanager
    async def _stdio(self) -> AsyncIterator[Any]:
        assert self.config.command is not None
        program, *args = self.config.command
        params = StdioServerParameters(command=program, args=args, env=dict(self.config.env))
        async with _stderr_to_log(self.name) as errlog:
            async with stdio_client(params, errlog=errlog) as streams:
                errlog.close()  # the child has its copy; EOF comes when it exits
                yield streams

    @contextlib.asynccontextmanager
    async def _http(self) -> AsyncIterator[Any]:
        assert self.config.url is not None
        headers = {k: v.get_secret_value() for k, v in self.config.headers.items()}
        timeout = httpx2.Timeout(self.config.timeout, read=300.0)
        async with httpx2.AsyncClient(headers=headers, timeout=timeout) as client:
            async with streamable_http_client(self.config.url, http_client=client) as streams:
                yield streams

    async def _list_tools(self, session: ClientSession) -> list[types.Tool]:
        tools: list[types.Tool] = []
        cursor: str | None = None
        while True:
            params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await session.list_tools(params=params)
            tools += page.tools
            cursor = page.next_cursor
            if not cursor:
                return tools

    async def _watch(self, session: ClientSession) -> None:
        """Until stopped: ping every `PING_INTERVAL` s; return on stop, raise when gone."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PING_INTERVAL):
                    await _first(self._stop.wait(), self._gone.wait())
            if self._stop.is_set():
                return
            if self._gone.is_set():
                raise ServerGone("the connection broke during a call")
            async with asyncio.timeout(max(PING_TIMEOUT, self.config.timeout)):
                await session.send_ping()

    # -- tools ------------------------------------------------------------------------------

    def _offer(self, listed: list[types.Tool]) -> None:
        allow = self.config.tools
        for tool in listed:
            if allow is not None and tool.name not in allow:
                continue
            name = tool_name(self.name, tool.name)
            schema = dict(tool.input_schema or {})
            schema.setdefault("type", "object")
            schema.setdefault("properties", {})
            description = (tool.description or tool.name)[:1000]
            self._unregister(name)  # a name left by an earlier connection
            self._register(Tool(name, description, self._handler(tool.name), schema))
            self.tools.append(name)
        if allow is not None:
            missing = sorted(set(allow) - {t.name for t in listed})
            if missing:
                log.warning("mcp server %s has no tool(s) %s", self.name, ", ".join(missing))

    def _clear(self) -> None:
        for name in self.tools:
            self._unregister(name)
        self.tools = []
        self._session = None

    def _handler(self, tool: str) -> Callable[[dict[str, Any], ToolContext], Any]:
        async def handler(args: dict[str, Any], ctx: ToolContext) -> ToolResult:
            return await self.call(tool, args)

        return handler

    async def call(self, tool: str, args: dict[str, Any]) -> ToolResult:
        """Call `tool`; every failure (timeout, a server that died) is an error result."""
        session = self._session
        label = tool_name(self.name, tool)
        if session is None:
            return ToolResult(f"Error: the MCP server {self.name} is not connected", error=True)
        try:
            async with asyncio.timeout(self.config.timeout):
                result = await session.call_tool(tool, args)
        except TimeoutError:
            return ToolResult(
                f"Error: {label} did not answer within {self.config.timeout:g} s", error=True
            )
        except MCPError as exc:
            if exc.code == types.CONNECTION_CLOSED:
                self._gone.set()
                return ToolResult(f"Error: the MCP server {self.name} went away", error=True)
            return ToolResult(f"Error: {label}: {exc.message}", error=True)
        except Exception as exc:
            self._gone.set()
            return ToolResult(f"Error: the MCP server {self.name} failed: {describe(exc)}", True)
        return to_result(result)


async def _first(*aws: Any) -> None:
    """Wait until the first of `aws` completes; cancel the others."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


@contextlib.asynccontextmanager
async def _stderr_to_log(name: str) -> AsyncIterator[TextIO]:
    """A pipe whose write end is the child's stderr; each line it writes is logged."""
    read_fd, write_fd = os.pipe()
    writer = os.fdopen(write_fd, "w")
    reader_file = os.fdopen(read_fd, "rb")
    transport: asyncio.BaseTransport | None = None
    task: asyncio.Task[None] | None = None
    try:  # from here on, every path closes both ends (a cancelled start included)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), reader_file
        )
        task = asyncio.create_task(_pump(name, reader), name=f"mcp {name} stderr")
        yield writer
    finally:
        writer.close()
        if task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), 2.0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if transport is not None:
            transport.close()
        else:
            reader_file.close()


async def _pump(name: str, reader: asyncio.StreamReader) -> None:
    while True:
        try:
            line = await reader.readline()
        except ValueError:  # a line over the limit: skip it
            continue
        if not line:
            return
        text = line.decode(errors="replace").rstrip()
        if text:
            log.info("mcp %s: %s", name, text[:MAX_STDERR_LINE])
