"""Take over from the AI, hand back, hand off: the agents' services driven from the console."""

from __future__ import annotations

from django.test import TransactionTestCase

from rooms.enums import EventType
from rooms.models import AuditEntry, RoomEvent
from tests.agents.helpers import agent_replies, make_agent, open_room, say_in, state_of
from tests.console.helpers import csrf_post, logged_in, operator, viewer


class TakeoverTests(TransactionTestCase):
    def setUp(self) -> None:
        make_agent("triage", provider="scripted")
        make_agent("billing", provider="scripted")
        self.room_id = open_room("triage", "billing")
        self.client = logged_in(operator())

    def act(self, action: str, data: dict | None = None) -> None:
        response = csrf_post(self.client, f"/admin/rooms/room/{self.room_id}/console/action/{action}/", data or {})
        self.assertEqual(response.status_code, 302)

    def test_takeover_silences_the_ai_until_handback(self) -> None:
        say_in(self.room_id, "hello")
        answered = len(agent_replies(self.room_id))
        self.assertGreaterEqual(answered, 1, "the scripted agent answers before the takeover")

        self.act("takeover")
        state = state_of(self.room_id)
        self.assertIsNone(state["active_agent_id"])
        self.assertEqual(state["human"]["operator"], "olga")
        say_in(self.room_id, "are you a human?")
        self.assertEqual(len(agent_replies(self.room_id)), answered)
        csrf_post(self.client, f"/admin/rooms/room/{self.room_id}/console/reply/", {"text": "Yes, I am Olga.", "token": "r1"})
        self.assertEqual(len(agent_replies(self.room_id)), answered)

        self.act("handback", {"agent": "triage"})
        state = state_of(self.room_id)
        self.assertEqual(state["active_agent_id"], "triage")
        self.assertIsNone(state.get("human"))
        say_in(self.room_id, "thanks, bot")
        self.assertGreater(len(agent_replies(self.room_id)), answered)
        self.assertEqual(
            list(AuditEntry.objects.order_by("id").values_list("action", flat=True)), ["takeover", "reply", "handback"]
        )
        bodies = list(
            RoomEvent.objects.filter(room_id=self.room_id, type=EventType.HANDOFF).values_list("content__body", flat=True)
        )
        self.assertIn("olga took over the conversation", bodies)
        self.assertIn("Handed back to triage", bodies)

    def test_handoff_to_another_agent(self) -> None:
        self.act("takeover")
        self.act("handoff", {"agent": "billing"})
        self.assertEqual(state_of(self.room_id)["active_agent_id"], "billing")
        page = self.client.get(f"/admin/rooms/room/{self.room_id}/console/").content.decode()
        self.assertIn("Handed back to billing", page)  # the handoff history on the room page

    def test_handback_to_an_agent_not_in_the_room_is_refused(self) -> None:
        self.act("takeover")
        before = state_of(self.room_id)
        self.act("handback", {"agent": "stranger"})
        self.assertEqual(state_of(self.room_id), before)
        self.assertEqual(AuditEntry.objects.filter(action="handback").count(), 0)

    def test_a_viewer_cannot_take_over(self) -> None:
        before = state_of(self.room_id)
        response = csrf_post(logged_in(viewer()), f"/admin/rooms/room/{self.room_id}/console/action/takeover/")
        self.assertEqual(response.status_code, 403)
        self.assertEqual(state_of(self.room_id), before)


class AgentToAgentHandoffTests(TransactionTestCase):
    def setUp(self) -> None:
        make_agent("triage", provider="scripted")
        make_agent("billing", provider="scripted")
        self.room_id = open_room("triage", "billing")
        self.client = logged_in(operator())
        say_in(self.room_id, "hello")  # the router makes an agent active

    def test_the_active_agent_hands_off_to_the_chosen_agent(self) -> None:
        active = state_of(self.room_id)["active_agent_id"]
        self.assertIn(active, ("triage", "billing"))
        target = "billing" if active == "triage" else "triage"
        csrf_post(self.client, f"/admin/rooms/room/{self.room_id}/console/action/handoff/", {"agent": target})
        state = state_of(self.room_id)
        self.assertEqual((state["active_agent_id"], state["previous_agent_id"]), (target, active))
        self.assertEqual(AuditEntry.objects.get().target, f"agent:{target}")

    def test_a_handoff_the_agents_refuse_is_reported_and_not_audited(self) -> None:
        active = state_of(self.room_id)["active_agent_id"]
        csrf_post(self.client, f"/admin/rooms/room/{self.room_id}/console/action/handoff/", {"agent": active})
        self.assertEqual(state_of(self.room_id)["active_agent_id"], active)
        self.assertFalse(AuditEntry.objects.exists())
