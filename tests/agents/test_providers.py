"""Gemini and Mistral (their REST APIs over httpx) and the scripted provider, each through the engine."""

from __future__ import annotations

import json
import time

from django.test import SimpleTestCase, TransactionTestCase

from agents.providers.base import AIRequest, ChatMessage, ToolCall, ToolSpec
from agents.providers.scripted import ScriptedProvider
from tests.agents.fakes import FakeGeminiServer, FakeOpenAIServer, Turn
from tests.agents.helpers import FrameRecorder, agent_replies, make_agent, open_room, say_in


class GeminiTests(TransactionTestCase):
    def test_streamed_reply_with_a_function_call_round(self) -> None:
        turns = [Turn(tool_calls=[("lookup_order", {"order_id": "1003"})]), Turn(text="It was delivered yesterday.", chunk=6)]
        with FakeGeminiServer(turns) as server:
            make_agent(
                "gem",
                provider="gemini",
                model="gemini-test",
                base_url=server.url,
                api_key="g-key",
                tools=["lookup_order"],
                vision=True,
            )
            room_id = open_room("gem")
            recorder = FrameRecorder(room_id)
            self.addCleanup(recorder.close)
            say_in(room_id, "order 1003?")
            recorder.wait_for("stream_end")
        self.assertEqual(server.paths, ["/v1beta/models/gemini-test:streamGenerateContent?alt=sse"] * 2)
        self.assertEqual(server.headers[0]["x-goog-api-key"], "g-key")
        first = server.requests[0]
        self.assertIn("You are Gem.", first["systemInstruction"]["parts"][0]["text"])
        self.assertEqual(first["contents"], [{"role": "user", "parts": [{"text": "order 1003?"}]}])
        self.assertEqual(first["tools"][0]["functionDeclarations"][0]["name"], "lookup_order")
        second = server.requests[1]["contents"]
        self.assertEqual(second[1]["parts"][0]["functionCall"]["name"], "lookup_order")
        self.assertIn('"delivered"', second[2]["parts"][0]["functionResponse"]["response"]["result"])
        self.assertEqual(agent_replies(room_id)[0].content["body"], "It was delivered yesterday.")
        self.assertEqual("".join(c["delta"] for c in recorder.of_type("stream_chunk")), "It was delivered yesterday.")


class MistralTests(TransactionTestCase):
    def test_reply_with_a_tool_round_over_the_chat_completions_api(self) -> None:
        turns = [Turn(tool_calls=[("get_current_time", {})]), Turn(text="It is now.")]
        with FakeOpenAIServer(turns) as server:
            make_agent(
                "mist", provider="mistral", model="mistral-test", base_url=server.url, api_key="m-key", tools=["get_current_time"]
            )
            room_id = open_room("mist")
            say_in(room_id, "what time is it")
        self.assertEqual(server.headers[0]["authorization"], "Bearer m-key")
        self.assertEqual(server.requests[0]["model"], "mistral-test")
        tool_turn = server.requests[1]["messages"][-1]
        self.assertEqual(
            (tool_turn["role"], tool_turn["name"], tool_turn["tool_call_id"]), ("tool", "get_current_time", "call_0")
        )
        self.assertEqual(agent_replies(room_id)[0].content["body"], "It is now.")


class ScriptedProviderTests(SimpleTestCase):
    def test_it_streams_word_by_word_without_a_label_on_every_reply(self) -> None:
        deltas: list[str] = []
        response = ScriptedProvider(agent_name="Demo").stream(AIRequest("", [ChatMessage("user", "hello")]), deltas.append)
        self.assertIn("I'm a demo agent", response.text)
        self.assertNotIn("no AI model", response.text)
        self.assertEqual("".join(deltas), response.text)
        self.assertGreater(len(deltas), 5)

    def test_it_streams_at_a_reading_pace_set_per_agent_or_by_setting(self) -> None:
        request = AIRequest("", [ChatMessage("user", "hello")])
        stamps: list[float] = []
        ScriptedProvider(config={"word_delay_ms": 30, "first_token_delay_ms": 50}).stream(
            request, lambda _d: stamps.append(time.monotonic())
        )
        gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
        self.assertGreater(len(gaps), 5)
        self.assertGreaterEqual(min(gaps), 0.028)
        with self.settings(ROOMKIT_SCRIPTED_WORD_DELAY_MS=25, ROOMKIT_SCRIPTED_FIRST_TOKEN_DELAY_MS=0):
            started = time.monotonic()
            stamps.clear()
            ScriptedProvider().stream(request, lambda _d: stamps.append(time.monotonic()))
        self.assertGreaterEqual(stamps[-1] - started, 0.025 * (len(stamps) - 1) * 0.9)
        # The test runner's pace: none.
        started = time.monotonic()
        ScriptedProvider().stream(request, lambda _d: None)
        self.assertLess(time.monotonic() - started, 0.02)

    def test_tool_results_are_told_in_words_never_as_raw_output(self) -> None:
        def after(tool_name: str, result: str) -> str:
            return (
                ScriptedProvider()
                .generate(
                    AIRequest(
                        "",
                        [
                            ChatMessage("user", "where is my order?"),
                            ChatMessage("assistant", "", tool_calls=[ToolCall("c1", tool_name, {})]),
                            ChatMessage("tool", result, tool_call_id="c1", tool_name=tool_name),
                        ],
                    )
                )
                .text
            )

        shipped = after("lookup_order", json.dumps({"order_id": "1001", "found": True, "status": "shipped", "eta": "soon"}))
        self.assertEqual(shipped, "Order 1001 has shipped and should arrive soon.")
        missing = after("lookup_order", json.dumps({"order_id": "77", "found": False}))
        self.assertIn("couldn't find order 77", missing)
        self.assertIn("1001, 1002, 1003", missing)
        self.assertEqual(after("mystery", json.dumps({"secret_field": 1})), "All done.")
        self.assertEqual(after("mystery", "Error: mystery failed: boom"), "Sorry, I couldn't do that just now.")
        self.assertEqual(after("get_current_time", "2025-01-02T03:04:05+00:00"), "It is 2025-01-02 at 03:04:05 UTC.")

    def test_keyword_rules_call_tools(self) -> None:
        spec = ToolSpec("refund", "Refund", {"type": "object", "properties": {"note": {"type": "string"}}})
        provider = ScriptedProvider(
            config={"rules": [{"keywords": ["money back"], "tool": "refund", "arguments": {"note": "{text}"}}]}
        )
        response = provider.generate(AIRequest("", [ChatMessage("user", "I want my money back")], tools=[spec]))
        self.assertEqual([(c.name, c.arguments) for c in response.tool_calls], [("refund", {"note": "I want my money back"})])
        after = provider.generate(
            AIRequest(
                "",
                [
                    ChatMessage("user", "I want my money back"),
                    ChatMessage("assistant", "", tool_calls=response.tool_calls),
                    ChatMessage("tool", "done", tool_call_id="x", tool_name="refund"),
                ],
                tools=[spec],
            )
        )
        self.assertEqual(after.tool_calls, [])
        self.assertEqual(after.text, "All done.")
