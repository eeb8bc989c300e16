"""Tools from an MCP server (a real one, over streamable HTTP on 127.0.0.1) and skills that enable tools."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from django.test import TransactionTestCase
from mcp.server.mcpserver import MCPServer as MCPApp

from agents.mcp_tools import clear_cache
from agents.models import Agent, MCPServer
from tests.agents.fakes import FakeOpenAIServer, Turn
from tests.agents.helpers import agent_replies, last_generation, make_agent, open_room, say_in


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalMCPServer:
    def __init__(self) -> None:
        app = MCPApp("calculator")

        @app.tool()
        def add(a: int, b: int) -> int:
            """Add two integers."""
            return a + b

        @app.tool()
        def divide_by_zero() -> str:
            """Always fails."""
            raise ValueError("cannot divide by zero")

        self.port = _free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(app.streamable_http_app(), host="127.0.0.1", port=self.port, log_level="error")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def __enter__(self) -> LocalMCPServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("MCP server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class MCPToolTests(TransactionTestCase):
    def setUp(self) -> None:
        clear_cache()
        self.addCleanup(clear_cache)

    def test_an_agent_calls_tools_of_an_mcp_server(self) -> None:
        turns = [Turn(tool_calls=[("add", {"a": 2, "b": 40}), ("divide_by_zero", {})]), Turn(text="2 + 40 = 42.")]
        with LocalMCPServer() as mcp_server, FakeOpenAIServer(turns) as server:
            MCPServer.objects.create(id="calc", url=mcp_server.url, timeout_seconds=10)
            agent = make_agent("mathy", provider="openai", base_url=server.base_url)
            Agent.objects.get(pk=agent.id).mcp_servers.add("calc")
            room_id = open_room("mathy")
            say_in(room_id, "what is 2 + 40?")
        offered = {t["function"]["name"]: t["function"]["parameters"] for t in server.requests[0]["tools"]}
        self.assertEqual(offered["add"]["required"], ["a", "b"])
        self.assertIn("divide_by_zero", offered)
        results = [m["content"] for m in server.requests[1]["messages"] if m["role"] == "tool"]
        self.assertEqual(results[0], "42")
        self.assertTrue(results[1].startswith("Error: divide_by_zero failed"))
        self.assertEqual(agent_replies(room_id)[0].content["body"], "2 + 40 = 42.")

    def test_an_unreachable_mcp_server_offers_nothing_and_the_agent_still_answers(self) -> None:
        with FakeOpenAIServer([Turn(text="Still here.")]) as server:
            MCPServer.objects.create(id="down", url=f"http://127.0.0.1:{_free_port()}/mcp", timeout_seconds=2)
            make_agent("mathy", provider="openai", base_url=server.base_url)
            Agent.objects.get(pk="mathy").mcp_servers.add("down")
            room_id = open_room("mathy")
            say_in(room_id, "hi")
        self.assertNotIn("tools", server.requests[0])
        self.assertEqual(agent_replies(room_id)[0].content["body"], "Still here.")


class SkillTests(TransactionTestCase):
    def test_activating_a_skill_returns_its_instructions_and_enables_its_tools(self) -> None:
        turns = [
            Turn(tool_calls=[("activate_skill", {"name": "order_support"})]),
            Turn(tool_calls=[("lookup_order", {"order_id": "1001"})]),
            Turn(text="Order 1001 has shipped."),
        ]
        with FakeOpenAIServer(turns) as server:
            make_agent("clerk", provider="openai", base_url=server.base_url, skills=["order_support"])
            room_id = open_room("clerk")
            say_in(room_id, "where is order 1001")
        names = [[t["function"]["name"] for t in r["tools"]] for r in server.requests]
        self.assertEqual(names[0], ["activate_skill"])
        self.assertEqual(names[1], ["activate_skill", "lookup_order"])
        self.assertIn("order_support: Answer questions about an order", server.requests[0]["messages"][0]["content"])
        instructions = [m["content"] for m in server.requests[1]["messages"] if m["role"] == "tool"][0]
        self.assertIn("call lookup_order", instructions)
        self.assertEqual(last_generation(room_id).rounds, 3)
        self.assertEqual(agent_replies(room_id)[0].content["body"], "Order 1001 has shipped.")
