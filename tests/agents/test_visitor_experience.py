"""What the visitor's chat is told while agents and operators work: thinking, tool labels, join and left notices."""

from __future__ import annotations

from types import SimpleNamespace

from django.test import SimpleTestCase, TransactionTestCase

from agents.console_actions import handback, takeover
from agents.services import conversation_handback, conversation_handoff, conversation_takeover
from agents.tools import DEFAULT_TOOL_LABEL, Tool, get_tool, tool_label
from rooms.console.inbox import operator_public_name as operator_display_name
from rooms.enums import EventType, Visibility
from rooms.models import RoomEvent
from rooms.realtime.catchup import room_socket_events_after
from tests.agents.fakes import FakeOpenAIServer, Turn
from tests.agents.helpers import FrameRecorder, agent_replies, make_agent, make_pipeline, open_room, say_in


def _user(username: str, first: str = "", last: str = "") -> SimpleNamespace:
    return SimpleNamespace(
        first_name=first,
        get_full_name=lambda: f"{first} {last}".strip(),
        get_username=lambda: username,
    )


class ThinkingTests(TransactionTestCase):
    def test_thinking_starts_when_the_reply_is_queued_and_stops_when_it_is_given(self) -> None:
        make_agent("helper", provider="scripted", name="Assistant")
        room_id = open_room("helper")
        recorder = FrameRecorder(room_id)
        self.addCleanup(recorder.close)
        say_in(room_id, "hello")
        recorder.wait_for("stream_end")
        recorder.wait_for("agent_thinking", 2)
        kinds = [f.get("kind") or f["type"] for f in recorder.frames if f["type"] != "event"]
        start = kinds.index("agent_thinking")
        self.assertLess(start, kinds.index("stream_start"))
        first, last = recorder.of_type("agent_thinking")
        self.assertEqual(
            {k: first[k] for k in ("agent_id", "display_name", "state")},
            {"agent_id": "helper", "display_name": "Assistant", "state": "start"},
        )
        self.assertEqual((last["agent_id"], last["state"]), ("helper", "stop"))
        self.assertEqual(len(agent_replies(room_id)), 1)

    def test_a_reply_that_fails_before_any_token_still_stops_thinking(self) -> None:
        # A server that refuses everything: no stream ever starts, the generation fails.
        with FakeOpenAIServer(default=Turn(status=400, text="bad request")) as server:
            make_agent("helper", provider="openai", base_url=server.base_url, api_key="k", max_retries=0)
            room_id = open_room("helper")
            recorder = FrameRecorder(room_id)
            self.addCleanup(recorder.close)
            say_in(room_id, "hello")
            frames = recorder.wait_for("agent_thinking", 2)
        self.assertEqual([f["state"] for f in frames], ["start", "stop"])
        self.assertEqual(recorder.of_type("stream_start"), [])
        self.assertEqual(agent_replies(room_id), [])

    def test_nothing_is_owed_while_a_human_has_the_room(self) -> None:
        make_agent("helper", provider="scripted")
        room_id = open_room("helper")
        conversation_takeover(room_id, "sam")
        recorder = FrameRecorder(room_id)
        self.addCleanup(recorder.close)
        say_in(room_id, "hello?")
        say_in(room_id, "anyone?")
        recorder.wait_for("event", 2)
        self.assertEqual(recorder.of_type("agent_thinking"), [])


class ToolLabelTests(TransactionTestCase):
    def test_the_room_hears_the_tools_label_never_its_arguments(self) -> None:
        make_agent("helper", provider="scripted", tools=["lookup_order"])
        room_id = open_room("helper")
        recorder = FrameRecorder(room_id)
        self.addCleanup(recorder.close)
        say_in(room_id, "where is my order 1002?")
        recorder.wait_for("stream_end")
        [start] = recorder.of_type("tool_call_start")
        self.assertEqual(start["label"], "Looking up your order…")
        self.assertEqual(
            start["tool_calls"], [{"id": start["tool_calls"][0]["id"], "name": "lookup_order", "label": start["label"]}]
        )
        self.assertNotIn("1002", str(start))
        reply = agent_replies(room_id)[0].content["body"]
        self.assertEqual(reply, "Order 1002 (a rain jacket) is processing; it ships tomorrow.")

    def test_the_handoff_tool_speaks_to_the_customer(self) -> None:
        make_agent("triage", provider="scripted")
        make_agent("specialist", provider="scripted")
        make_pipeline("support", [("triage", "triage", "handling"), ("handling", "specialist", "")])
        room_id = open_room("triage", "specialist")
        recorder = FrameRecorder(room_id)
        self.addCleanup(recorder.close)
        say_in(room_id, "I have a billing problem")
        recorder.wait_for("tool_call_start")
        self.assertEqual(recorder.of_type("tool_call_start")[0]["label"], "Connecting you with the right person…")


class ToolLabelUnitTests(SimpleTestCase):
    def test_built_in_tools_have_labels_and_others_a_generic_one(self) -> None:
        self.assertEqual(tool_label(get_tool("lookup_order")), "Looking up your order…")
        self.assertEqual(tool_label(get_tool("get_current_time")), "Checking the time…")
        mcp_like = Tool("remote_search", "Search", {"type": "object", "properties": {}}, lambda ctx: "")
        self.assertEqual(tool_label(mcp_like), DEFAULT_TOOL_LABEL)
        self.assertEqual(tool_label(None), DEFAULT_TOOL_LABEL)

    def test_an_operator_is_named_by_first_name_else_full_name_else_login(self) -> None:
        self.assertEqual(operator_display_name(_user("sam1", "Sam", "Lee")), "Sam")
        self.assertEqual(operator_display_name(_user("sam1", "", "Lee")), "Lee")
        self.assertEqual(operator_display_name(_user("sam1")), "sam1")


class OperatorNoticeTests(TransactionTestCase):
    def _visible(self, room_id: str) -> list[tuple[str, str]]:
        events, _ = room_socket_events_after(room_id, 0, channel_id="web")
        return [(e["type"], e["content"].get("body", "")) for e in events]

    def test_the_customer_sees_the_operator_join_and_leave_by_name_and_no_handoff_bookkeeping(self) -> None:
        make_agent("helper", provider="scripted")
        room_id = open_room("helper")
        say_in(room_id, "hello")
        takeover(_user("sam1", "Sam", "Lee"), room_id, {})
        takeover(_user("sam1", "Sam", "Lee"), room_id, {})  # again: no second notice
        handback(_user("sam1", "Sam", "Lee"), room_id, {"agent": "helper"})
        visible = self._visible(room_id)
        notices = [v for v in visible if v[0] in (EventType.PARTICIPANT_JOINED, EventType.PARTICIPANT_LEFT)]
        self.assertEqual(
            notices,
            [("participant_joined", "Sam joined the conversation"), ("participant_left", "Sam left the conversation")],
        )
        self.assertNotIn("handoff", [t for t, _ in visible])
        self.assertFalse(any("sam1" in body or "took over" in body for _, body in visible))
        # The operators' record stays, internal.
        handoffs = RoomEvent.objects.filter(room_id=room_id, type=EventType.HANDOFF)
        self.assertEqual(handoffs.count(), 3)
        self.assertEqual({h.visibility for h in handoffs}, {Visibility.INTERNAL})
        joined = RoomEvent.objects.get(room_id=room_id, type=EventType.PARTICIPANT_JOINED)
        self.assertEqual(joined.content["data"], {"name": "Sam"})

    def test_a_room_waiting_for_a_person_that_is_handed_back_had_nobody_leave(self) -> None:
        make_agent("triage", provider="scripted")
        make_agent("specialist", provider="scripted")
        room_id = open_room("triage", "specialist")
        say_in(room_id, "hi")
        result = conversation_handoff(room_id=room_id, from_agent_id="triage", target="human", reason="asked")
        self.assertTrue(result.accepted)
        conversation_handback(room_id, "triage")
        kinds = [t for t, _ in self._visible(room_id)]
        self.assertNotIn("participant_left", kinds)
        self.assertNotIn("participant_joined", kinds)
        self.assertNotIn("handoff", kinds)

    def test_the_login_is_the_name_when_no_name_is_given(self) -> None:
        make_agent("helper", provider="scripted")
        room_id = open_room("helper")
        conversation_takeover(room_id, "olivia", operator_name="   ")
        self.assertIn(("participant_joined", "olivia joined the conversation"), self._visible(room_id))
