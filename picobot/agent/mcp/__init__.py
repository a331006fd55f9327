"""MCP (Model Context Protocol) client: each configured server's tools offered to the model.

manager.py  all servers; imports the SDK only when a server is configured (it is slow
            to import, and most installations have none)
server.py   one server, supervised
results.py  tool names and results, MCP -> OpenAI
"""

from picobot.agent.mcp.manager import McpManager

__all__ = ["McpManager"]
