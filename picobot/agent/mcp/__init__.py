"""MCP (Model Context Protocol) client: each configured server's tools offered to the model."""

from picobot.agent.mcp.manager import McpManager
from picobot.agent.mcp.results import to_result, tool_name
from picobot.agent.mcp.server import McpServer

__all__ = ["McpManager", "McpServer", "to_result", "tool_name"]
