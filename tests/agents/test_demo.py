"""The demo: seed_demo's triage and specialist on the scripted provider, through a web-chat session; the admin."""

from __future__ import annotations

import io
import re

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import TransactionTestCase, override_settings

from agents.models import Agent, Pipeline
from channels_app.webchat.services import webchat_message_send
from channels_app.webchat.sessions import chat_session_start
from channels_app.webchat.tokens import chat_token_verify
from rooms.models import Channel
from tests.agents.helpers import agent_replies, state_of


@override_settings(ROOMKIT_WEBCHAT_CHANNEL_ID="webchat")
class DemoTests(TransactionTestCase):
    def setUp(self) -> None:
        call_command("seed_demo", stdout=io.StringIO())

    def test_seed_demo_is_idempotent(self) -> None:
        out = io.StringIO()
        call_command("seed_demo", stdout=out)
        self.assertIn("agent triage: kept", out.getvalue())
        self.assertEqual(Agent.objects.count(), 2)
        self.assertEqual([s.phase for s in Pipeline.objects.get(pk="support").stages.all()], ["triage", "handling"])
        webchat = Channel.objects.get(pk="webchat").config
        self.assertEqual(webchat["attach_on_create"], ["triage", "specialist"])
        self.assertTrue(webchat["welcome_message"].strip())
        self.assertTrue(webchat["reply_time"].strip())
        self.assertEqual(Channel.objects.get(pk="triage").category, "intelligence")

    def test_scripted_triage_hands_off_and_the_specialist_uses_tools(self) -> None:
        session = chat_session_start(display_name="Ann", open_now=True)
        claims = chat_token_verify(session.token)
        webchat_message_send(claims, client_msg_id="1", text="hello")
        webchat_message_send(claims, client_msg_id="2", text="I have a billing problem")
        webchat_message_send(claims, client_msg_id="3", text="where is my order 1001?")
        replies = [(r.source_channel_id, r.content["body"]) for r in agent_replies(session.room_id)]
        self.assertEqual([who for who, _ in replies], ["triage", "triage", "specialist", "specialist"])
        # Marked once by the page's badge, not in every reply.
        self.assertFalse(any("Scripted" in body or "no AI model" in body for _, body in replies))
        self.assertIn("Let me transfer you to a specialist", replies[1][1])
        self.assertIn("Hello! I'm Specialist", replies[2][1])
        # The sample order, in words: no raw tool output reaches the customer.
        self.assertEqual(
            replies[3][1], "Order 1001 (a pair of walking boots) has shipped with DemoPost and should arrive in 2 days."
        )
        state = state_of(session.room_id)
        self.assertEqual((state["active_agent_id"], state["phase"], state["handoff_count"]), ("specialist", "handling", 1))

    def test_an_order_question_to_triage_is_answered_by_the_specialist_it_hands_to(self) -> None:
        session = chat_session_start(display_name="Lena", open_now=True)
        claims = chat_token_verify(session.token)
        webchat_message_send(claims, client_msg_id="1", text="Where is my order 1003?")
        replies = [(r.source_channel_id, r.content["body"]) for r in agent_replies(session.room_id)]
        self.assertEqual([who for who, _ in replies], ["triage", "specialist"])
        self.assertIn("Let me transfer you to a specialist", replies[0][1])
        self.assertTrue(replies[1][1].startswith("Hello! I'm Specialist. Order 1003"), replies[1][1])
        self.assertNotIn("couldn't find", replies[1][1])

    def test_asking_for_a_person_assigns_the_conversation_to_the_online_operator(self) -> None:
        from rooms.console.inbox import presence_joined
        from rooms.models import Room
        from tests.console.helpers import operator

        olga = operator("olga")
        operator("otto")  # offline: never offered it
        presence_joined(olga)
        session = chat_session_start(display_name="Ann", open_now=True)
        claims = chat_token_verify(session.token)
        webchat_message_send(claims, client_msg_id="1", text="can I talk to a real person please")
        room = Room.objects.get(pk=session.room_id)
        self.assertIsNotNone((room.conversation_state or {}).get("human"))
        self.assertEqual(room.assignee, olga)

    def test_every_order_the_demo_suggests_exists(self) -> None:
        session = chat_session_start(display_name="Ann", open_now=True)
        claims = chat_token_verify(session.token)
        webchat_message_send(claims, client_msg_id="1", text="hello")
        webchat_message_send(claims, client_msg_id="2", text="I have a billing problem")
        webchat_message_send(claims, client_msg_id="3", text="what can you do?")
        suggestion = agent_replies(session.room_id)[-1].content["body"]
        suggested = re.findall(r"\b\d{4}\b", suggestion)
        self.assertGreaterEqual(len(suggested), 2, suggestion)
        for n, number in enumerate(suggested):
            webchat_message_send(claims, client_msg_id=f"order-{n}", text=f"where is order {number}?")
            answer = agent_replies(session.room_id)[-1].content["body"]
            self.assertIn(f"Order {number}", answer)
            self.assertNotIn("couldn't find", answer)
            self.assertNotIn("{", answer)

    def test_each_agent_offers_only_what_it_can_answer(self) -> None:
        session = chat_session_start(display_name="Ann", open_now=True)
        claims = chat_token_verify(session.token)
        webchat_message_send(claims, client_msg_id="1", text="what can you do?")
        triage = agent_replies(session.room_id)[-1]
        self.assertEqual(triage.source_channel_id, "triage")
        self.assertNotIn("the time", triage.content["body"])  # it has no clock
        webchat_message_send(claims, client_msg_id="2", text="I have a billing problem")
        webchat_message_send(claims, client_msg_id="3", text="what can you do?")
        specialist = agent_replies(session.room_id)[-1]
        self.assertEqual(specialist.source_channel_id, "specialist")
        self.assertIn("the time", specialist.content["body"])
        webchat_message_send(claims, client_msg_id="4", text="what time is it?")
        self.assertRegex(agent_replies(session.room_id)[-1].content["body"], r"\d{1,2}:\d{2}")

    def test_admin_pages_work_and_keys_are_write_only(self) -> None:
        user = get_user_model().objects.create_superuser("admin", "a@example.com", "pw-not-used")
        self.client.force_login(user)
        for url in (
            "/admin/agents/agent/",
            "/admin/agents/agent/triage/change/",
            "/admin/agents/pipeline/",
            "/admin/agents/pipeline/support/change/",
            "/admin/agents/generation/",
            "/admin/agents/agent/add/",
        ):
            self.assertEqual(self.client.get(url).status_code, 200, url)
        page = self.client.get("/admin/agents/pipeline/").content.decode()
        self.assertIn("triage (triage) → handling (specialist)", page)
        data = {
            "id": "newbie",
            "name": "Newbie",
            "provider": "openai",
            "model": "gpt-x",
            "temperature": "0.5",
            "max_tokens": "100",
            "tools": '["lookup_order"]',
            "skills": "[]",
            "memory_window": "10",
            "timeout_seconds": "30",
            "max_retries": "1",
            "retry_base_delay_seconds": "0.5",
            "max_tool_rounds": "4",
            "tool_loop_timeout_seconds": "60",
            "tool_result_max_chars": "5000",
            "provider_config": "{}",
            "enabled": "on",
            "api_key": "sk-secret-value",
            "role": "",
            "description": "",
            "scope": "",
            "system_prompt": "",
            "base_url": "",
            "language": "",
            "voice": "",
            "greeting": "",
            "fallback_provider": "",
            "fallback_model": "",
            "fallback_base_url": "",
        }
        response = self.client.post("/admin/agents/agent/add/", data)
        self.assertEqual(response.status_code, 302, response.content.decode()[:2000])
        channel = Channel.objects.get(pk="newbie")
        self.assertEqual((channel.channel_type, channel.category), ("ai", "intelligence"))
        self.assertEqual(channel.get_secret("api_key"), "sk-secret-value")
        self.assertNotIn("sk-secret-value", self.client.get("/admin/agents/agent/newbie/change/").content.decode())
        bad = self.client.post("/admin/agents/agent/add/", {**data, "id": "other", "tools": '["rm_rf"]'})
        self.assertContains(bad, "unknown tools: rm_rf")
