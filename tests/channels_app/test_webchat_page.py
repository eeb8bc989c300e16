"""A web-chat channel's page settings: the welcome message and reply time (checked on save), and the demo badge."""

from __future__ import annotations

import io

from django.core.management import CommandError, call_command
from django.test import TestCase, override_settings

from channels_app.services_channels import channel_upsert
from rooms.errors import InvalidInput
from rooms.models import Channel
from rooms.selectors import clear_channel_cache
from tests.agents.helpers import make_agent

SESSIONS = "/api/v1/chat/sessions"


@override_settings(ROOMKIT_WEBCHAT_CHANNEL_ID="webchat")
class WebchatPageSettingsTests(TestCase):
    def setUp(self) -> None:
        clear_channel_cache()
        self.addCleanup(clear_channel_cache)

    def start(self) -> dict:
        response = self.client.post(SESSIONS, data={}, content_type="application/json")
        self.assertEqual(response.status_code, 201, response.content)
        return response.json()

    def test_the_session_answer_carries_the_greeting_and_reply_time(self) -> None:
        channel_upsert(
            channel_id="webchat",
            channel_type="websocket",
            config={"welcome_message": "  Welcome to the shop!  ", "reply_time": "We reply within minutes."},
        )
        clear_channel_cache()
        data = self.start()
        self.assertEqual(data["welcome_message"], "Welcome to the shop!")
        self.assertEqual(data["reply_time"], "We reply within minutes.")
        self.assertIs(data["demo_agent"], False)

    def test_unset_settings_are_empty(self) -> None:
        data = self.start()  # the channel is made on first use, with no config
        self.assertEqual((data["welcome_message"], data["reply_time"], data["demo_agent"]), ("", "", False))

    def test_bad_settings_are_refused_on_save_and_nothing_changes(self) -> None:
        channel_upsert(channel_id="webchat", channel_type="websocket", config={"welcome_message": "Hi"})
        for bad, words in (
            ({"welcome_message": 42}, "welcome_message must be text"),
            ({"welcome_message": "x" * 1001}, "welcome_message must be at most 1000 characters"),
            ({"reply_time": ["soon"]}, "reply_time must be text"),
            ({"reply_time": "a\x00b"}, "reply_time must be text"),
        ):
            with self.subTest(bad=bad), self.assertRaises(InvalidInput) as refused:
                channel_upsert(channel_id="webchat", channel_type="websocket", config=bad)
            self.assertIn(f"config.{next(iter(bad))}: {words}", refused.exception.message)
            self.assertEqual(refused.exception.code, "invalid_channel")
            self.assertEqual(Channel.objects.get(pk="webchat").config, {"welcome_message": "Hi"})

    def test_add_channel_refuses_them_too(self) -> None:
        with self.assertRaisesMessage(CommandError, "welcome_message must be text"):
            call_command(
                "add_channel", "chat2", "--type", "websocket", "--config", '{"welcome_message": true}', stdout=io.StringIO()
            )
        self.assertFalse(Channel.objects.filter(pk="chat2").exists())

    def test_the_demo_badge_is_on_only_when_a_scripted_agent_answers(self) -> None:
        make_agent("bot", provider="scripted")
        make_agent("gpt", provider="openai", model="gpt-x")
        channel_upsert(channel_id="webchat", channel_type="websocket", config={"attach_on_create": ["gpt"]})
        clear_channel_cache()
        self.assertIs(self.start()["demo_agent"], False)
        channel_upsert(channel_id="webchat", channel_type="websocket", config={"attach_on_create": ["gpt", "bot"]})
        clear_channel_cache()
        self.assertIs(self.start()["demo_agent"], True)
