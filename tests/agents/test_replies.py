"""A reply and a streamed reply, through the real OpenAI and Anthropic SDKs against local fake servers."""

from __future__ import annotations

from django.test import TransactionTestCase

from agents.models import GenerationStatus
from rooms.enums import ChannelType, Direction
from rooms.models import RoomEvent
from tests.agents.fakes import FakeAnthropicServer, FakeOpenAIServer, Turn
from tests.agents.helpers import FrameRecorder, agent_replies, chat_channel, last_generation, make_agent, open_room, say, say_in


class OpenAIReplyTests(TransactionTestCase):
    def test_a_user_message_gets_a_reply_through_the_inbound_path(self) -> None:
        with FakeOpenAIServer([Turn(text="Hello Alice, how can I help?", usage=(30, 8))]) as server:
            make_agent(
                "helper",
                provider="openai",
                model="gpt-test",
                base_url=server.base_url,
                api_key="sk-test",
                system_prompt="Be brief.",
            )
            chat_channel("helper")
            first = say("Hi there")
        replies = agent_replies(first.room_id)
        self.assertEqual(len(replies), 1)
        reply = replies[0]
        self.assertEqual(reply.content, {"type": "text", "body": "Hello Alice, how can I help?"})
        self.assertEqual(reply.source_channel_id, "helper")
        self.assertEqual(reply.source_channel.channel_type, ChannelType.AI)
        self.assertEqual(reply.direction, Direction.OUTBOUND)
        self.assertEqual(reply.chain_depth, first.event.chain_depth + 1)
        self.assertEqual(reply.parent_event_id, first.event_id)
        self.assertEqual(reply.seq, first.seq + 1)
        # The router marked who answers, on the user's event; the agent's own reply is not routed.
        self.assertEqual(RoomEvent.objects.get(pk=first.event_id).metadata["route_to"], "helper")
        self.assertNotIn("route_to", reply.metadata)
        gen = last_generation(first.room_id)
        self.assertEqual((gen.status, gen.reply_event_id, gen.provider_used), (GenerationStatus.DONE, reply.id, "openai"))
        self.assertEqual(gen.usage, {"input_tokens": 30, "output_tokens": 8})
        # What the SDK sent: the model, the system prompt, the user's message once, the key.
        request = server.requests[0]
        self.assertEqual(request["model"], "gpt-test")
        self.assertTrue(request["stream"])
        self.assertEqual(request["messages"][0]["role"], "system")
        self.assertIn("Be brief.", request["messages"][0]["content"])
        self.assertEqual(request["messages"][1:], [{"role": "user", "content": "Hi there"}])
        self.assertEqual(server.headers[0]["authorization"], "Bearer sk-test")

    def test_the_reply_streams_to_the_rooms_sockets_then_names_its_event(self) -> None:
        text = "Streaming works one small piece at a time."
        with FakeOpenAIServer([Turn(text=text, chunk=5)]) as server:
            make_agent("helper", provider="openai", base_url=server.base_url)
            room_id = open_room("helper")
            recorder = FrameRecorder(room_id)
            self.addCleanup(recorder.close)
            say_in(room_id, "Tell me something")
            end = recorder.wait_for("stream_end")[0]
        reply = agent_replies(room_id)[0]
        kinds = [f["type"] for f in recorder.frames if f["type"].startswith("stream_")]
        self.assertEqual(kinds[0], "stream_start")
        self.assertEqual(kinds[-1], "stream_end")
        start = recorder.of_type("stream_start")[0]
        chunks = recorder.of_type("stream_chunk")
        self.assertEqual(start["agent_id"], "helper")
        self.assertEqual(len(chunks), 9)
        self.assertEqual({c["stream_id"] for c in chunks} | {end["stream_id"]}, {start["stream_id"]})
        self.assertEqual("".join(c["delta"] for c in chunks), text)
        self.assertEqual(end["event_id"], reply.id)
        self.assertEqual(reply.content["body"], text)
        # The stored event also reached the sockets, after its stream.
        events = [f for f in recorder.frames if f["type"] == "event" and f["event"]["id"] == reply.id]
        self.assertEqual(len(events), 1)


class AnthropicReplyTests(TransactionTestCase):
    def test_streamed_reply_through_the_anthropic_sdk(self) -> None:
        with FakeAnthropicServer([Turn(text="Bonjour from Claude.", chunk=3, usage=(40, 6))]) as server:
            make_agent(
                "claude", provider="anthropic", model="claude-test", base_url=server.url, api_key="ak-test", temperature=1.4
            )
            room_id = open_room("claude")
            recorder = FrameRecorder(room_id)
            self.addCleanup(recorder.close)
            say_in(room_id, "Salut")
            recorder.wait_for("stream_end")
        reply = agent_replies(room_id)[0]
        self.assertEqual(reply.content["body"], "Bonjour from Claude.")
        self.assertEqual("".join(c["delta"] for c in recorder.of_type("stream_chunk")), "Bonjour from Claude.")
        request = server.requests[0]
        self.assertEqual(request["model"], "claude-test")
        self.assertIn("You are Claude.", request["system"])
        self.assertEqual(request["messages"], [{"role": "user", "content": [{"type": "text", "text": "Salut"}]}])
        self.assertNotIn("temperature", request)  # not a parameter of this Messages API
        self.assertEqual(server.headers[0]["authorization"], "Bearer ak-test")
        self.assertEqual(last_generation(room_id).usage, {"input_tokens": 40, "output_tokens": 6})
