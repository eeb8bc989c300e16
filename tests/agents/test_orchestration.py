"""Routing and handoffs: the router hook, the handoff tool, greetings, humans, phases, hooks, overrides."""

from __future__ import annotations

from django.test import SimpleTestCase, TransactionTestCase

from agents.orchestration import ConversationState, route
from agents.selectors import PipelineInfo, StageInfo
from agents.services import conversation_handback, conversation_set_language, conversation_takeover
from rooms.hooks import HookTrigger
from rooms.models import Room, RoomEvent
from tests.agents.fakes import FakeOpenAIServer, Turn
from tests.agents.helpers import agent_replies, make_agent, make_pipeline, open_room, say_in, state_of
from tests.rooms.fixtures import use_hook

PIPELINE = PipelineInfo(
    "support",
    allow_human_handoff=True,
    greet_on_handoff=True,
    stages=(
        StageInfo("triage", "triage", "handling"),
        StageInfo("handling", "specialist", "", intents=("refund",)),
        StageInfo("voice", "voicebot", "", channel_types=("voice",)),
    ),
)


class RouteRulesTests(SimpleTestCase):
    def decide(self, state: ConversationState, *, channel_type: str = "websocket", text: str = "hi", intent: str | None = None):
        return route(
            state=state,
            bound_agents=["triage", "specialist", "voicebot"],
            pipeline=PIPELINE,
            channel_type=channel_type,
            text=text,
            intent=intent,
        )

    def test_default_is_the_first_stage(self) -> None:
        d = self.decide(ConversationState())
        self.assertEqual((d.agent_id, d.reason, d.phase), ("triage", "default", "triage"))

    def test_sticky_active_agent_wins_over_rules(self) -> None:
        d = self.decide(ConversationState(active_agent_id="triage", phase="triage"), text="I want a refund")
        self.assertEqual((d.agent_id, d.reason), ("triage", "sticky"))

    def test_intent_rule_by_keyword_or_metadata(self) -> None:
        self.assertEqual(self.decide(ConversationState(), text="I want a REFUND").agent_id, "specialist")
        self.assertEqual(self.decide(ConversationState(), intent="refund").agent_id, "specialist")

    def test_channel_type_rule_and_phase(self) -> None:
        self.assertEqual(self.decide(ConversationState(), channel_type="voice").agent_id, "voicebot")
        d = self.decide(ConversationState(phase="handling"))
        self.assertEqual((d.agent_id, d.reason), ("specialist", "phase"))

    def test_nobody_while_a_human_has_the_room(self) -> None:
        d = self.decide(ConversationState(active_agent_id="triage", human={"status": "active"}))
        self.assertEqual((d.agent_id, d.reason), (None, "human"))


def _handoff(target: str, **extra) -> Turn:
    return Turn(
        text="Let me get a specialist.",
        tool_calls=[
            (
                "handoff_conversation",
                {"target": target, "reason": "billing question", "summary": "Alice was double charged on invoice 42.", **extra},
            )
        ],
    )


class HandoffTests(TransactionTestCase):
    def setUp(self) -> None:
        self.hooks: dict[str, list] = {"handoff": [], "rejected": [], "phase": []}
        use_hook(self, HookTrigger.ON_HANDOFF, lambda p, c: self.hooks["handoff"].append(p))
        use_hook(self, HookTrigger.ON_HANDOFF_REJECTED, lambda p, c: self.hooks["rejected"].append(p))
        use_hook(self, HookTrigger.ON_PHASE_TRANSITION, lambda p, c: self.hooks["phase"].append(p))

    def _pipeline(self, triage_url: str, specialist_url: str, **pipeline_fields) -> str:
        make_agent("triage", provider="openai", base_url=triage_url, role="Triage receptionist")
        make_agent(
            "specialist",
            provider="openai",
            base_url=specialist_url,
            role="Billing specialist",
            description="Handles invoices and refunds.",
            greeting="Introduce yourself as the billing specialist.",
        )
        make_pipeline("support", [("triage", "triage", "handling"), ("handling", "specialist", "")], **pipeline_fields)
        return open_room("triage", "specialist")

    def test_handoff_through_the_tool_moves_the_room_and_the_specialist_greets(self) -> None:
        with (
            FakeOpenAIServer([_handoff("specialist")]) as triage,
            FakeOpenAIServer([Turn(text="Hi, I'm the billing specialist."), Turn(text="Refund issued.")]) as specialist,
        ):
            room_id = self._pipeline(triage.base_url, specialist.base_url)
            first = say_in(room_id, "I was charged twice")
            state = state_of(room_id)
            second = say_in(room_id, "Can you refund it?")
        # The triage agent was offered the handoff with its allowed targets.
        handoff_tool = next(t for t in triage.requests[0]["tools"] if t["function"]["name"] == "handoff_conversation")
        self.assertEqual(handoff_tool["function"]["parameters"]["properties"]["target"]["enum"], ["specialist", "human"])
        self.assertIn("specialist: Specialist (Billing specialist)", triage.requests[0]["messages"][0]["content"])
        self.assertEqual(state["active_agent_id"], "specialist")
        self.assertEqual(state["previous_agent_id"], "triage")
        self.assertEqual(state["handoff_count"], 1)
        self.assertEqual(state["phase"], "handling")
        self.assertEqual(
            [(h["from_phase"], h["to_phase"]) for h in state["phase_history"]], [(None, "triage"), ("triage", "handling")]
        )
        self.assertEqual(state["context"]["handoff"]["summary"], "Alice was double charged on invoice 42.")
        self.assertEqual(RoomEvent.objects.get(pk=first.event_id).metadata["route_to"], "triage")
        self.assertEqual(RoomEvent.objects.get(pk=second.event_id).metadata["route_to"], "specialist")
        # The triage agent's words, then the specialist's greeting, then its answer.
        replies = agent_replies(room_id)
        self.assertEqual(
            [(r.source_channel_id, r.content["body"]) for r in replies],
            [
                ("triage", "Let me get a specialist."),
                ("specialist", "Hi, I'm the billing specialist."),
                ("specialist", "Refund issued."),
            ],
        )
        handoff_event = RoomEvent.objects.get(room_id=room_id, type="handoff")
        self.assertEqual(replies[1].parent_event_id, handoff_event.id)
        # The greeting request carried the greeting instruction and the inherited summary.
        greet = specialist.requests[0]
        self.assertIn("Summary from Triage: Alice was double charged on invoice 42.", greet["messages"][0]["content"])
        self.assertIn("Introduce yourself as the billing specialist.", greet["messages"][-1]["content"])
        # Memory: the triage agent's words are attributed to it, not claimed by the specialist.
        answer = specialist.requests[1]["messages"]
        self.assertIn(
            {"role": "user", "content": "[Another agent, Triage, Triage receptionist, said]: Let me get a specialist."}, answer
        )
        self.assertIn({"role": "assistant", "content": "Hi, I'm the billing specialist."}, answer)
        self.assertEqual(answer[-1], {"role": "user", "content": "Can you refund it?"})
        self.assertEqual(len(self.hooks["handoff"]), 1)
        self.assertEqual(self.hooks["handoff"][0]["to_agent"], "specialist")
        self.assertEqual(self.hooks["phase"][0]["to_phase"], "handling")
        self.assertEqual(self.hooks["rejected"], [])

    def test_a_handoff_outside_the_allowed_transitions_is_refused(self) -> None:
        with (
            FakeOpenAIServer([_handoff("specialist", next_phase="triage"), Turn(text="Sorry, I'll keep helping you.")]) as triage,
            FakeOpenAIServer() as specialist,
        ):
            room_id = self._pipeline(triage.base_url, specialist.base_url)
            say_in(room_id, "help")
        state = state_of(room_id)
        self.assertEqual((state["active_agent_id"], state["handoff_count"]), ("triage", 0))
        refusal = [m for m in triage.requests[1]["messages"] if m["role"] == "tool"][0]["content"]
        self.assertIn('"accepted": false', refusal)
        self.assertIn("phase 'triage' is not served by 'specialist'", refusal)
        self.assertEqual(len(self.hooks["rejected"]), 1)
        self.assertEqual(self.hooks["handoff"], [])
        self.assertEqual(specialist.requests, [])
        self.assertEqual(agent_replies(room_id)[-1].content["body"], "Let me get a specialist.\n\nSorry, I'll keep helping you.")

    def test_handoff_to_a_human_keeps_the_ai_quiet_until_handed_back(self) -> None:
        with FakeOpenAIServer([_handoff("human"), Turn(text="Welcome back!")]) as triage, FakeOpenAIServer() as specialist:
            room_id = self._pipeline(triage.base_url, specialist.base_url)
            say_in(room_id, "I want to talk to a person")
            self.assertEqual(state_of(room_id)["human"]["status"], "waiting")
            quiet = say_in(room_id, "hello? anyone?")
            conversation_takeover(room_id, "olivia")
            say_in(room_id, "thanks Olivia")
            self.assertEqual(len(triage.requests), 1)
            conversation_handback(room_id, "triage")
            say_in(room_id, "back to the bot")
        self.assertEqual(RoomEvent.objects.get(pk=quiet.event_id).metadata["route_to"], None)
        self.assertEqual(len(triage.requests), 2)
        state = state_of(room_id)
        self.assertIsNone(state["human"])
        self.assertEqual(state["active_agent_id"], "triage")
        self.assertEqual(state["handoff_count"], 2)  # the takeover of a waiting room is no new handoff
        self.assertEqual([h["to_agent"] for h in self.hooks["handoff"]], ["human", "human", "triage"])
        self.assertEqual(specialist.requests, [])

    def test_room_language_and_ai_overrides_reach_the_prompt(self) -> None:
        with FakeOpenAIServer(default=Turn(text="D'accord.")) as server:
            make_agent(
                "helper",
                provider="openai",
                base_url=server.base_url,
                system_prompt="Agent prompt.",
                temperature=0.2,
                tools=["lookup_order"],
            )
            room_id = open_room(
                "helper", ai_config={"system_prompt": "Room prompt.", "temperature": 0.9, "tools": ["get_current_time"]}
            )
            conversation_set_language(room_id, "French")
            say_in(room_id, "Hello")
        request = server.requests[0]
        system = request["messages"][0]["content"]
        self.assertTrue(system.startswith("Room prompt."))
        self.assertNotIn("Agent prompt.", system)
        self.assertIn("Always reply in French.", system)
        self.assertEqual(request["temperature"], 0.9)
        self.assertEqual(
            [t["function"]["name"] for t in request["tools"] if t["function"]["name"] != "handoff_conversation"],
            ["get_current_time"],
        )
        self.assertEqual(Room.objects.get(pk=room_id).conversation_state["context"]["language"], "French")


class PhaseServiceTests(TransactionTestCase):
    def test_set_phase_moves_the_active_agent_and_fires_the_hook(self) -> None:
        from agents.services import conversation_set_phase
        from rooms.errors import InvalidInput

        seen: list[dict] = []
        use_hook(self, HookTrigger.ON_PHASE_TRANSITION, lambda p, c: seen.append(p))
        make_agent("triage", provider="scripted")
        make_agent("specialist", provider="scripted")
        make_pipeline("support", [("triage", "triage", "handling"), ("handling", "specialist", "")])
        room_id = open_room("triage", "specialist")
        say_in(room_id, "hello")
        state = conversation_set_phase(room_id, "handling", reason="operator moved it")
        self.assertEqual((state.phase, state.active_agent_id), ("handling", "specialist"))
        self.assertEqual(seen[-1]["to_phase"], "handling")
        self.assertEqual(RoomEvent.objects.filter(room_id=room_id, type="phase_transition").count(), 1)
        with self.assertRaises(InvalidInput):
            conversation_set_phase(room_id, "nowhere")
        with self.assertRaises(InvalidInput):
            conversation_handback(room_id, "not-bound")
        say_in(room_id, "now who answers?")
        self.assertEqual(agent_replies(room_id)[-1].source_channel_id, "specialist")


class BlockedMessageTests(TransactionTestCase):
    def test_a_message_blocked_after_routing_gets_no_reply_even_from_the_sweeper(self) -> None:
        from datetime import timedelta

        from django.utils import timezone

        from agents.models import Generation, GenerationStatus
        from agents.tasks import sweep_generations_task
        from rooms.hooks import HookResult

        use_hook(self, HookTrigger.BEFORE_BROADCAST, lambda e, c: HookResult.block("no swearing"), priority=5000)
        make_agent("helper", provider="scripted")
        room_id = open_room("helper")
        blocked = say_in(room_id, "darn it")
        self.assertTrue(blocked.blocked)
        Generation.objects.update(created_at=timezone.now() - timedelta(minutes=5))
        sweep_generations_task.run()
        self.assertEqual(agent_replies(room_id), [])
        self.assertEqual(list(Generation.objects.values_list("status", flat=True)), [GenerationStatus.SKIPPED])


class ForeignIntelligenceChannelTests(TransactionTestCase):
    def test_an_intelligence_channel_that_is_not_an_agent_is_not_routed(self) -> None:
        from agents.models import Generation
        from tests.support import make_channel

        make_channel("raw-ai", channel_type="ai", provider="", category="intelligence")
        make_agent("helper", provider="scripted", enabled=False)
        room_id = open_room("raw-ai", "helper")
        result = say_in(room_id, "anyone?")
        self.assertEqual(result.status, "stored")
        self.assertNotIn("route_to", RoomEvent.objects.get(pk=result.event_id).metadata)
        self.assertFalse(Generation.objects.exists())
        self.assertEqual(agent_replies(room_id), [])
