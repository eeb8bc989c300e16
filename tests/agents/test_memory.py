"""Memory: the most recent events after 60 turns, the current message once, attribution, images."""

from __future__ import annotations

from django.test import TransactionTestCase

from agents.models import Agent
from agents.services import agent_save
from rooms.enums import EventType
from rooms.inbound import InboundMessage, process_inbound
from rooms.services import channel_attach
from tests.agents.fakes import FakeOpenAIServer, Turn
from tests.agents.helpers import agent_replies, make_agent, open_room, say_in


class ContextWindowTests(TransactionTestCase):
    def test_after_60_turns_the_window_holds_the_latest_events_and_the_current_message_once(self) -> None:
        make_agent("helper", provider="scripted", memory_window=20)
        room_id = open_room("helper")
        for n in range(1, 60):
            say_in(room_id, f"user turn {n}")
        self.assertEqual(len(agent_replies(room_id)), 59)
        with FakeOpenAIServer([Turn(text="turn 60 answered")]) as server:
            agent = Agent.objects.get(pk="helper")
            agent.provider, agent.base_url = "openai", server.base_url
            agent_save(agent)
            say_in(room_id, "user turn 60")
        messages = server.requests[0]["messages"][1:]
        self.assertEqual(len(messages), 20)
        users = [m["content"] for m in messages if m["role"] == "user"]
        self.assertEqual(users, [f"user turn {n}" for n in range(51, 61)])
        self.assertEqual(messages[-1], {"role": "user", "content": "user turn 60"})
        self.assertEqual(sum(1 for m in messages if m["content"] == "user turn 60"), 1)
        # The agent's own earlier replies are its turns, newest included.
        assistant = [m["content"] for m in messages if m["role"] == "assistant"]
        self.assertEqual(len(assistant), 10)
        self.assertIn("user turn 59", assistant[-1])
        self.assertIn("demo agent", assistant[-1])

    def test_a_reply_the_caller_interrupted_is_remembered_as_far_as_they_heard_it(self) -> None:
        make_agent("helper", provider="scripted")
        room_id = open_room("helper")
        say_in(room_id, "what are your opening hours")
        [reply] = agent_replies(room_id)
        # A call's session noted what the caller heard before they cut in (voice.services.voice_reply_heard).
        process_inbound(
            InboundMessage(
                channel_id="web",
                room_id=room_id,
                sender="alice",
                text="interrupted",
                event_type=EventType.NOTE,
                metadata={"voice": {"heard_event_id": reply.id, "heard_text": "We open at nine"}},
            )
        )
        with FakeOpenAIServer([Turn(text="Sure.")]) as server:
            agent = Agent.objects.get(pk="helper")
            agent.provider, agent.base_url = "openai", server.base_url
            agent_save(agent)
            say_in(room_id, "sorry, go on")
        assistant = [m["content"] for m in server.requests[0]["messages"] if m["role"] == "assistant"]
        self.assertEqual(assistant, ["We open at nine — [interrupted by the caller]"])

    def test_images_reach_a_vision_model_and_people_are_named_when_several_speak(self) -> None:
        with FakeOpenAIServer([Turn(text="A cat.")]) as server:
            make_agent("eyes", provider="openai", base_url=server.base_url, vision=True)
            room_id = open_room("eyes")
            channel_attach(room_id=room_id, channel_id="web", address="bob", display_name="Bob")
            say_in(room_id, "hi", sender="bob")
            process_inbound(
                InboundMessage(
                    channel_id="web",
                    room_id=room_id,
                    sender="alice",
                    content={
                        "type": "media",
                        "url": "https://cdn.example.com/cat.png",
                        "mime_type": "image/png",
                        "caption": "what is this?",
                    },
                )
            )
        last = server.requests[-1]["messages"][-1]
        self.assertEqual(last["role"], "user")
        self.assertEqual(
            last["content"],
            [
                {"type": "text", "text": "[Alice]: what is this?"},
                {"type": "image_url", "image_url": {"url": "https://cdn.example.com/cat.png"}},
            ],
        )
        self.assertEqual(server.requests[-1]["messages"][-3]["content"], "[Bob]: hi")

    def test_without_vision_the_image_is_described(self) -> None:
        with FakeOpenAIServer([Turn(text="ok")]) as server:
            make_agent("blind", provider="openai", base_url=server.base_url, vision=False)
            room_id = open_room("blind")
            process_inbound(
                InboundMessage(
                    channel_id="web",
                    room_id=room_id,
                    sender="alice",
                    content={"type": "media", "url": "https://cdn.example.com/cat.png", "mime_type": "image/png"},
                )
            )
        self.assertEqual(
            server.requests[0]["messages"][-1], {"role": "user", "content": "[Media: https://cdn.example.com/cat.png]"}
        )


class LocalImageTests(TransactionTestCase):
    def test_an_uploaded_image_goes_to_claude_inline_since_vendors_cannot_fetch_our_host(self) -> None:
        import base64
        import tempfile

        from django.conf import settings
        from django.core.files.base import ContentFile
        from django.core.files.storage import default_storage

        from tests.agents.fakes import FakeAnthropicServer

        png = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
        with tempfile.TemporaryDirectory() as media, self.settings(MEDIA_ROOT=media):
            name = default_storage.save("chat/dot.png", ContentFile(png))
            url = f"{settings.PUBLIC_BASE_URL}/{settings.MEDIA_URL.strip('/')}/{name}"
            with FakeAnthropicServer([Turn(text="A dot.")]) as server:
                make_agent("eyes", provider="anthropic", base_url=server.url, vision=True)
                room_id = open_room("eyes")
                process_inbound(
                    InboundMessage(
                        channel_id="web",
                        room_id=room_id,
                        sender="alice",
                        content={"type": "media", "url": url, "mime_type": "image/png"},
                    )
                )
        block = server.requests[0]["messages"][0]["content"][0]
        self.assertEqual(
            block,
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": base64.b64encode(png).decode()}},
        )
