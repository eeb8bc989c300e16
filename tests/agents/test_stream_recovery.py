"""A provider stream that dies partway: retried or handed to the fallback, never a half answer kept.

Real SDKs against the local fake servers over HTTP: the OpenAI fake cuts the
connection (or sends an error event) after a few deltas, the Anthropic fake
too. What the room's sockets see is checked frame by frame: the broken stream
ends as abandoned (no event, so the chat page removes it), a fresh stream
carries the whole answer, and exactly one reply is stored.
"""

from __future__ import annotations

import time
from typing import Any

from django.test import TransactionTestCase

from agents.models import GenerationStatus
from rooms.models import Observation
from tests.agents.fakes import FakeAnthropicServer, FakeOpenAIServer, Turn
from tests.agents.helpers import FrameRecorder, agent_replies, last_generation, make_agent, open_room, say_in


def streams(recorder: FrameRecorder) -> list[dict[str, Any]]:
    """Each stream the sockets saw, in order: its id, its text, and its stream_end frame."""
    out: dict[str, dict[str, Any]] = {}
    for f in recorder.frames:
        if f["type"] == "stream_start":
            out[f["stream_id"]] = {"id": f["stream_id"], "text": "", "end": None, "agent_id": f["agent_id"]}
        elif f["type"] == "stream_chunk":
            out[f["stream_id"]]["text"] += f["delta"]
        elif f["type"] == "stream_end":
            out[f["stream_id"]]["end"] = f
    return list(out.values())


class StreamRecoveryTests(TransactionTestCase):
    def _room(self, agent_id: str = "helper", **agent: Any) -> tuple[str, FrameRecorder]:
        make_agent(agent_id, **agent)
        room_id = open_room(agent_id)
        recorder = FrameRecorder(room_id)
        self.addCleanup(recorder.close)
        return room_id, recorder

    def assert_abandoned(self, stream: dict[str, Any]) -> None:
        self.assertIsNotNone(stream["end"], f"stream {stream['id']} never ended")
        self.assertIsNone(stream["end"]["event_id"])
        self.assertTrue(stream["end"]["abandoned"])

    def test_openai_stream_cut_midway_is_retried_on_a_fresh_stream(self) -> None:
        cut = Turn(text="This answer will be cut off halfway.", chunk=5, break_after=2)
        whole = Turn(text="The whole answer, second time.", chunk=5)
        with FakeOpenAIServer([cut, whole]) as server:
            room_id, recorder = self._room(provider="openai", base_url=server.base_url, max_retries=2)
            say_in(room_id, "hello")
            recorder.wait_for("stream_end", 2)
        self.assertEqual(len(server.requests), 2)
        self.assertEqual(server.requests[0]["messages"], server.requests[1]["messages"])  # the same question again
        first, second = streams(recorder)
        self.assertEqual(first["text"], "This answe")  # what the sockets saw before the cut
        self.assert_abandoned(first)
        self.assertNotEqual(first["id"], second["id"])
        self.assertEqual(second["text"], "The whole answer, second time.")
        replies = agent_replies(room_id)
        self.assertEqual([r.content["body"] for r in replies], ["The whole answer, second time."])
        self.assertEqual(second["end"]["event_id"], replies[0].id)
        self.assertNotIn("abandoned", second["end"])
        kinds = [(f["type"], f.get("stream_id")) for f in recorder.frames if f["type"].startswith("stream_")]
        # The broken stream is over before the fresh one starts.
        self.assertLess(kinds.index(("stream_end", first["id"])), kinds.index(("stream_start", second["id"])))
        gen = last_generation(room_id)
        self.assertEqual((gen.status, gen.provider_used, gen.reply_event_id), (GenerationStatus.DONE, "openai", replies[0].id))

    def test_an_error_event_inside_an_openai_stream_is_retried(self) -> None:
        broken = Turn(text="Half of", chunk=4, break_after=1, error_event=True)
        with FakeOpenAIServer([broken, Turn(text="Fine now.")]) as server:
            room_id, recorder = self._room(provider="openai", base_url=server.base_url, max_retries=1)
            say_in(room_id, "hello")
            recorder.wait_for("stream_end", 2)
        first, second = streams(recorder)
        self.assertEqual(first["text"], "Half")
        self.assert_abandoned(first)
        self.assertEqual(second["text"], "Fine now.")
        self.assertEqual([r.content["body"] for r in agent_replies(room_id)], ["Fine now."])

    def test_a_stream_that_keeps_dying_moves_to_the_fallback_provider(self) -> None:
        with (
            FakeOpenAIServer(default=Turn(text="Never finished, never stored.", chunk=6, break_after=1)) as primary,
            FakeAnthropicServer([Turn(text="Fallback answer in full.", chunk=4)]) as backup,
        ):
            room_id, recorder = self._room(
                provider="openai",
                base_url=primary.base_url,
                max_retries=1,
                fallback_provider="anthropic",
                fallback_base_url=backup.url,
            )
            say_in(room_id, "hello")
            recorder.wait_for("stream_end", 3)
        self.assertEqual((len(primary.requests), len(backup.requests)), (2, 1))
        seen = streams(recorder)
        self.assertEqual([s["text"] for s in seen], ["Never ", "Never ", "Fallback answer in full."])
        self.assertEqual(len({s["id"] for s in seen}), 3)
        self.assert_abandoned(seen[0])
        self.assert_abandoned(seen[1])
        replies = agent_replies(room_id)
        self.assertEqual([r.content["body"] for r in replies], ["Fallback answer in full."])
        self.assertEqual(seen[2]["end"]["event_id"], replies[0].id)
        gen = last_generation(room_id)
        self.assertEqual((gen.status, gen.provider_used), (GenerationStatus.DONE, "anthropic"))
        self.assertEqual(replies[0].metadata["provider"], "anthropic")

    def test_anthropic_stream_cut_or_overloaded_midway_is_retried(self) -> None:
        turns = [
            Turn(text="Cut right here, mid-sentence.", chunk=4, break_after=2),
            Turn(text="Overloaded in the middle.", chunk=4, break_after=1, error_event=True),
            Turn(text="Third time it all arrives.", chunk=4),
        ]
        with FakeAnthropicServer(turns) as server:
            room_id, recorder = self._room(provider="anthropic", base_url=server.url, max_retries=2)
            say_in(room_id, "hello")
            recorder.wait_for("stream_end", 3)
        self.assertEqual(len(server.requests), 3)
        seen = streams(recorder)
        self.assertEqual([s["text"] for s in seen], ["Cut righ", "Over", "Third time it all arrives."])
        self.assert_abandoned(seen[0])
        self.assert_abandoned(seen[1])
        self.assertEqual([r.content["body"] for r in agent_replies(room_id)], ["Third time it all arrives."])
        gen = last_generation(room_id)
        self.assertEqual((gen.status, gen.provider_used), (GenerationStatus.DONE, "anthropic"))

    def test_a_cut_in_a_later_round_keeps_the_earlier_rounds_text(self) -> None:
        turns = [
            Turn(text="Let me check.", tool_calls=[("lookup_order", {"order_id": "1001"})]),
            Turn(text="It shipped and will", chunk=4, break_after=2),
            Turn(text="It has shipped.", chunk=4),
        ]
        with FakeOpenAIServer(turns) as server:
            room_id, recorder = self._room(provider="openai", base_url=server.base_url, tools=["lookup_order"])
            say_in(room_id, "where is order 1001?")
            recorder.wait_for("stream_end", 2)
        self.assertEqual(len(server.requests), 3)
        self.assertEqual(server.requests[1]["messages"], server.requests[2]["messages"])
        first, second = streams(recorder)
        self.assertEqual(first["text"], "Let me check.\n\nIt shipp")
        self.assert_abandoned(first)
        # The fresh stream starts with what the reply already says, then the retried round.
        self.assertEqual(second["text"], "Let me check.\n\nIt has shipped.")
        replies = agent_replies(room_id)
        self.assertEqual([r.content["body"] for r in replies], ["Let me check.\n\nIt has shipped."])
        self.assertEqual(second["end"]["event_id"], replies[0].id)
        gen = last_generation(room_id)
        self.assertEqual((gen.status, gen.rounds), (GenerationStatus.DONE, 2))

    def test_a_retry_before_any_text_of_the_round_keeps_the_same_stream(self) -> None:
        turns = [
            Turn(text="Let me check.", tool_calls=[("lookup_order", {"order_id": "1001"})]),
            Turn(status=500),
            Turn(text="It has shipped.", chunk=4),
        ]
        with FakeOpenAIServer(turns) as server:
            room_id, recorder = self._room(provider="openai", base_url=server.base_url, tools=["lookup_order"])
            say_in(room_id, "where is order 1001?")
            recorder.wait_for("stream_end")
        self.assertEqual(len(server.requests), 3)
        (only,) = streams(recorder)
        self.assertEqual(only["text"], "Let me check.\n\nIt has shipped.")
        self.assertEqual(only["end"]["event_id"], agent_replies(room_id)[0].id)

    def test_when_every_attempt_dies_midway_nothing_is_stored_and_no_stream_is_left_open(self) -> None:
        with FakeOpenAIServer(default=Turn(text="Broken every time.", chunk=3, break_after=1)) as server:
            room_id, recorder = self._room(provider="openai", base_url=server.base_url, max_retries=1)
            say_in(room_id, "hello")
            recorder.wait_for("stream_end", 2)
        self.assertEqual(len(server.requests), 2)
        seen = streams(recorder)
        self.assertEqual(len(seen), 2)
        for s in seen:
            self.assert_abandoned(s)
        self.assertEqual(agent_replies(room_id), [])
        gen = last_generation(room_id)
        self.assertEqual(gen.status, GenerationStatus.FAILED)
        self.assertIn("mid-stream", gen.error)
        self.assertTrue(Observation.objects.filter(room_id=room_id, kind="ai_generation_failed").exists())


class ConnectionReuseTests(TransactionTestCase):
    def test_the_next_reply_reuses_the_connection_of_a_finished_stream(self) -> None:
        # The openai SDK closes a stream at [DONE] before the end of the HTTP
        # body; our transport reads that end so the pooled connection is kept.
        with FakeOpenAIServer(default=Turn(text="Short answer.")) as server:
            make_agent("helper", provider="openai", base_url=server.base_url)
            room_id = open_room("helper")
            say_in(room_id, "one")
            time.sleep(0.2)  # the end of the body is read in the background
            say_in(room_id, "two")
        self.assertEqual(len(server.requests), 2)
        self.assertEqual(len(set(server.peers)), 1, server.peers)
        self.assertEqual(len(agent_replies(room_id)), 2)
