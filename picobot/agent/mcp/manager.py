"""All configured MCP servers: started in the background, never blocking the daemon, their
tools added to (and removed from) the agent's registry as they come and go."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from picobot.agent.tools import ToolRegistry
from picobot.config import McpServerConfig

if TYPE_CHECKING:
    from picobot.agent.mcp.server import McpServer

log = logging.getLogger("picobot.mcp")


class McpManager:
    """`start()` returns at once; each server connects (and reconnects) on its own.

    Resource handling: `aclose()` stops every server (their child processes included).
    """

    def __init__(self, servers: Mapping[str, McpServerConfig], registry: ToolRegistry) -> None:
        self.registry = registry
        self.configs = dict(servers)
        self.servers: dict[str, McpServer] = {}

    def start(self) -> None:
        for name, config in self.configs.items():
            self._start(name, config)

    def _start(self, name: str, config: McpServerConfig) -> None:
        if not config.enabled:
            return
        from picobot.agent.mcp.server import McpServer  # the SDK: only when a server is used

        server = McpServer(name, config, self.registry.register, self.registry.unregister)
        self.servers[name] = server
        server.start()

    async def aclose(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.servers.values()))

    async def reload(self, servers: Mapping[str, McpServerConfig]) -> list[str]:
        """Restart the servers whose config changed, start new ones, stop removed ones."""
        changed = [
            name
            for name in {*self.configs, *servers}
            if self.configs.get(name) != servers.get(name)
        ]
        await asyncio.gather(*(self.servers.pop(n).stop() for n in changed if n in self.servers))
        self.configs = dict(servers)
        applied = []
        for name in sorted(changed):
            config = servers.get(name)
            if config is not None and config.enabled:
                self._start(name, config)
                applied.append(f"mcp {name}: restarted")
            else:
                applied.append(f"mcp {name}: stopped")
        return applied

    def status(self) -> dict[str, dict[str, Any]]:
        """`{NAME: {state, tools, error}}` for /api/status and /readyz."""
        result = {n: s.status() for n, s in self.servers.items()}
        for name, config in self.configs.items():
            if not config.enabled:
                result[name] = {"state": "disabled", "tools": [], "error": None}
        return result
