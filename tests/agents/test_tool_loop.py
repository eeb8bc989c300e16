"""The tool loop: several rounds, parallel calls, errors as text, cut results, max rounds, ephemeral events, steering."""

from __future__ import annotations

import json
import threading
import time

from django.test import TransactionTestCase

from agents.models import GenerationStatus
from agents.tools import ToolContext, tool, unregister_tool
from tests.agents.fakes import FakeAnthropicServer, FakeOpenAIServer, Turn
from tests.agents.helpers import FrameRecorder, agent_replies, last_generation, make_agent, open_room, say_in


def _tool_messages(request: dict) -> list[dict]:
    return [m for m in request["messages"] if m["role"] == "tool"]


class ToolLoopTests(TransactionTestCase):
    def setUp(self) -> None:
        self.overlap = threading.Event()
        self.inside = 0
        lock = threading.Lock()

        def slow_probe(ctx: ToolContext, label: str) -> str:
            nonlocal lock
            with lock:
                self.inside += 1
                if self.inside > 1:
                    self.overlap.set()
            time.sleep(0.2)
            with lock:
                self.inside -= 1
            return f"probe {label} in {ctx.room_id[:4]}"

        tool(
            "slow_probe",
            description="A probe that takes 0.2 s.",
            parameters={"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]},
        )(slow_probe)
        tool("explode", description="Always fails.")(lambda ctx: 1 / 0)
        tool("huge", description="Returns a lot.")(lambda ctx: "HEAD" + "x" * 100_000 + "TAIL")
        for name in ("slow_probe", "explode", "huge"):
            self.addCleanup(unregister_tool, name)

    def test_three_rounds_with_parallel_calls_errors_and_cut_results(self) -> None:
        turns = [
            Turn(
                text="Let me check.",
                tool_calls=[
                    ("slow_probe", {"label": "a"}),
                    ("slow_probe", {"label": "b"}),
                    ("lookup_order", {"order_id": "1001"}),
                ],
            ),
            Turn(tool_calls=[("explode", {}), ("huge", {}), ("slow_probe", {"wrong": 1}), ("no_such_tool", {})]),
            Turn(text="Your order 1001 has shipped."),
        ]
        with FakeOpenAIServer(turns) as server:
            make_agent(
                "worker",
                provider="openai",
                base_url=server.base_url,
                tools=["slow_probe", "explode", "huge", "lookup_order"],
                tool_result_max_chars=1000,
            )
            room_id = open_room("worker")
            recorder = FrameRecorder(room_id)
            self.addCleanup(recorder.close)
            started = time.perf_counter()
            say_in(room_id, "Where is my order 1001?")
            elapsed = time.perf_counter() - started
            recorder.wait_for("stream_end")
        self.assertEqual(len(server.requests), 3)
        # Round 1's three calls ran at once: two 0.2 s probes overlapped.
        self.assertTrue(self.overlap.is_set())
        self.assertLess(elapsed, 2.0)
        first = _tool_messages(server.requests[1])
        self.assertEqual([m["tool_call_id"] for m in first], ["call_0", "call_1", "call_2"])
        self.assertTrue(first[0]["content"].startswith("probe a in "))
        self.assertEqual(json.loads(first[2]["content"])["status"], "shipped")
        # The assistant turn that asked for them precedes the results.
        assistant = [m for m in server.requests[1]["messages"] if m["role"] == "assistant"][0]
        self.assertEqual(assistant["content"], "Let me check.")
        self.assertEqual([c["function"]["name"] for c in assistant["tool_calls"]], ["slow_probe", "slow_probe", "lookup_order"])
        second = _tool_messages(server.requests[2])[3:]
        self.assertIn("ZeroDivisionError", second[0]["content"])
        self.assertTrue(second[0]["content"].startswith("Error: explode failed"))
        cut = second[1]["content"]
        self.assertLessEqual(len(cut), 1000)
        self.assertTrue(cut.startswith("HEAD"))
        self.assertTrue(cut.endswith("TAIL"))
        self.assertIn("characters cut", cut)
        self.assertIn("invalid arguments for slow_probe", second[2]["content"])
        self.assertEqual(second[3]["content"], "Error: unknown tool 'no_such_tool'.")
        reply = agent_replies(room_id)[0]
        self.assertEqual(reply.content["body"], "Let me check.\n\nYour order 1001 has shipped.")
        gen = last_generation(room_id)
        self.assertEqual((gen.status, gen.rounds), (GenerationStatus.DONE, 3))
        self.assertEqual(
            [c["name"] for c in gen.tool_calls],
            ["slow_probe", "slow_probe", "lookup_order", "explode", "huge", "slow_probe", "no_such_tool"],
        )
        self.assertEqual([c["ok"] for c in gen.tool_calls], [True, True, True, False, True, False, False])
        starts = recorder.of_type("tool_call_start")
        ends = recorder.of_type("tool_call_end")
        self.assertEqual(len(starts), 2)
        self.assertEqual(len(ends), 2)
        self.assertEqual([t["name"] for t in starts[0]["tool_calls"]], ["slow_probe", "slow_probe", "lookup_order"])
        self.assertEqual(starts[0]["agent_id"], "worker")
        self.assertGreaterEqual(ends[0]["duration_ms"], 190)
        # Tool calls are status, never text: the streamed text is the reply's.
        self.assertEqual("".join(c["delta"] for c in recorder.of_type("stream_chunk")), reply.content["body"])

    def test_anthropic_tool_use_round_trip(self) -> None:
        turns = [Turn(tool_calls=[("lookup_order", {"order_id": "1002"})]), Turn(text="Order 1002 ships tomorrow.")]
        with FakeAnthropicServer(turns) as server:
            make_agent("claude", provider="anthropic", base_url=server.url, tools=["lookup_order"])
            room_id = open_room("claude")
            say_in(room_id, "and order 1002?")
        self.assertEqual(server.requests[0]["tools"][0]["name"], "lookup_order")
        self.assertIn("input_schema", server.requests[0]["tools"][0])
        messages = server.requests[1]["messages"]
        self.assertEqual(
            messages[1]["content"], [{"type": "tool_use", "id": "toolu_0", "name": "lookup_order", "input": {"order_id": "1002"}}]
        )
        result = messages[2]["content"][0]
        self.assertEqual((result["type"], result["tool_use_id"]), ("tool_result", "toolu_0"))
        self.assertEqual(json.loads(result["content"])["status"], "processing")
        self.assertEqual(agent_replies(room_id)[0].content["body"], "Order 1002 ships tomorrow.")

    def test_max_rounds_stops_the_loop_and_says_so(self) -> None:
        with FakeOpenAIServer(default=Turn(tool_calls=[("lookup_order", {"order_id": "1"})])) as server:
            make_agent("looper", provider="openai", base_url=server.base_url, tools=["lookup_order"], max_tool_rounds=3)
            room_id = open_room("looper")
            say_in(room_id, "loop forever")
        self.assertEqual(len(server.requests), 3)
        gen = last_generation(room_id)
        self.assertEqual((gen.status, gen.rounds, gen.error), (GenerationStatus.DONE, 3, "stopped: max_rounds"))
        self.assertIn("too many tool steps", agent_replies(room_id)[0].content["body"])

    def test_loop_timeout_stops_between_rounds(self) -> None:
        with FakeOpenAIServer(default=Turn(tool_calls=[("slow_probe", {"label": "t"})])) as server:
            make_agent(
                "slow",
                provider="openai",
                base_url=server.base_url,
                tools=["slow_probe"],
                tool_loop_timeout_seconds=0.3,
                max_tool_rounds=20,
            )
            room_id = open_room("slow")
            started = time.perf_counter()
            say_in(room_id, "take your time")
        # Each round's tool takes 0.2 s: the 0.3 s budget ends the loop after a round or two, not after 20.
        self.assertLessEqual(len(server.requests), 2)
        self.assertLess(time.perf_counter() - started, 2.0)
        self.assertEqual(last_generation(room_id).error, "stopped: timeout")
        self.assertIn("took too long", agent_replies(room_id)[0].content["body"])


class SteeringTests(TransactionTestCase):
    """A message the user sends while the agent's tool loop runs is read by that loop, or cancels it."""

    def _agent_with_user_interrupting(self, server: FakeOpenAIServer, words: str) -> str:
        room: dict[str, str] = {}

        def user_writes(ctx: ToolContext) -> str:
            # The user's message arrives through the inbound path while this tool runs.
            say_in(room["id"], words)
            return "done waiting"

        tool("wait_a_bit", description="Waits.")(user_writes)
        self.addCleanup(unregister_tool, "wait_a_bit")
        make_agent("steady", provider="openai", base_url=server.base_url, tools=["wait_a_bit"])
        room["id"] = open_room("steady")
        return room["id"]

    def test_a_new_message_steers_the_running_loop(self) -> None:
        with FakeOpenAIServer([Turn(tool_calls=[("wait_a_bit", {})]), Turn(text="Switching to your new question.")]) as server:
            room_id = self._agent_with_user_interrupting(server, "actually, make it blue")
            say_in(room_id, "paint it red")
        self.assertEqual(len(server.requests), 2)
        last_user = [m for m in server.requests[1]["messages"] if m["role"] == "user"][-1]
        self.assertEqual(last_user["content"], "[The user added while you were working]: actually, make it blue")
        replies = agent_replies(room_id)
        self.assertEqual([r.content["body"] for r in replies], ["Switching to your new question."])
        statuses = sorted(g.status for g in last_generation(room_id).room.generations.all())
        self.assertEqual(statuses, [GenerationStatus.ABSORBED, GenerationStatus.DONE])

    def test_stop_cancels_the_running_loop(self) -> None:
        with FakeOpenAIServer([Turn(text="Working on it", tool_calls=[("wait_a_bit", {})]), Turn(text="never sent")]) as server:
            room_id = self._agent_with_user_interrupting(server, "stop")
            recorder = FrameRecorder(room_id)
            self.addCleanup(recorder.close)
            say_in(room_id, "do the long thing")
            end = recorder.wait_for("stream_end")[0]
        self.assertEqual(len(server.requests), 1)
        self.assertEqual(agent_replies(room_id), [])
        self.assertIsNone(end["event_id"])
        statuses = sorted(g.status for g in last_generation(room_id).room.generations.all())
        self.assertEqual(statuses, [GenerationStatus.ABSORBED, GenerationStatus.CANCELLED])
