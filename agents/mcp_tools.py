"""MCP servers as tool sources: their tools offered to agents, their calls made over streamable HTTP.

Each server's tool list is cached per process for a minute. A tool call opens
a session, calls the tool and closes it (generation threads are not async); a
result marked as an error comes back to the model as error text.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Any

from mcp import Client

from agents.models import MCPServer
from agents.tools import Tool, ToolContext

logger = logging.getLogger(__name__)

LIST_TTL_SECONDS = 60.0
_cache: dict[tuple[str, str], tuple[float, list[Tool]]] = {}
_lock = threading.Lock()


def _text_of(result: Any) -> str:
    parts = []
    for block in getattr(result, "content", None) or []:
        text = getattr(block, "text", None)
        parts.append(text if text is not None else block.model_dump_json())
    structured = getattr(result, "structured_content", None)
    if not parts and structured is not None:
        return json.dumps(structured)
    return "\n".join(parts)


async def _list(url: str, timeout: float) -> list[Any]:
    async with Client(url, read_timeout_seconds=timeout) as client:
        result = await client.list_tools()
        return list(result.tools)


async def _call(url: str, timeout: float, name: str, arguments: dict[str, Any]) -> Any:
    async with Client(url, read_timeout_seconds=timeout) as client:
        return await client.call_tool(name, arguments)


def _caller(server: MCPServer, name: str):
    url, timeout = server.url, server.timeout_seconds

    def call(ctx: ToolContext, **arguments: Any) -> str:
        result = asyncio.run(asyncio.wait_for(_call(url, timeout, name, arguments), timeout))
        text = _text_of(result)
        if getattr(result, "is_error", False):
            raise RuntimeError(text or "the MCP tool reported an error")
        return text

    return call


def mcp_server_tools(server: MCPServer) -> list[Tool]:
    """The server's tools (allowed ones only) as ``Tool``s; an unreachable server offers none."""
    key = (server.id, server.url)
    now = time.monotonic()
    hit = _cache.get(key)
    if hit and hit[0] > now:
        return hit[1]
    try:
        listed = asyncio.run(asyncio.wait_for(_list(server.url, server.timeout_seconds), server.timeout_seconds))
    except Exception as exc:
        logger.warning("MCP server %s (%s) did not list its tools: %s", server.id, server.url, exc)
        return []
    allowed = set(server.allowed_tools or [])
    tools = [
        Tool(t.name, t.description or "", t.input_schema or {"type": "object", "properties": {}}, _caller(server, t.name))
        for t in listed
        if not allowed or t.name in allowed
    ]
    with _lock:
        _cache[key] = (now + LIST_TTL_SECONDS, tools)
    return tools


def clear_cache() -> None:
    with _lock:
        _cache.clear()
