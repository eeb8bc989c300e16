"""Chain depth: an event caused by an event caused by … is stopped past the maximum, so channels cannot loop."""

from __future__ import annotations

from django.conf import settings
from django.test import TestCase, override_settings

from rooms import services
from rooms.enums import ChannelType, EventStatus
from rooms.errors import InvalidInput
from rooms.hooks import HookResult, HookTrigger
from rooms.models import Delivery, Observation, RoomEvent
from tests.rooms.fixtures import row_counts, send, use_hook
from tests.support import make_channel


class ChainDepthTests(TestCase):
    def setUp(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS)
        make_channel("mail", channel_type=ChannelType.EMAIL, provider="")
        self.room_id = send("sms-in", "+1555", "hi").room_id
        services.channel_attach(room_id=self.room_id, channel_id="mail", address="a@example.com")

    def test_default_maximum_is_five(self) -> None:
        self.assertEqual(settings.ROOMKIT_MAX_CHAIN_DEPTH, 5)

    def test_depth_five_is_stored_and_fanned_out(self) -> None:
        result = send("sms-in", "+1555", "reply", chain_depth=5)
        self.assertEqual(result.status, "stored")
        self.assertEqual(result.event.status, EventStatus.DELIVERED)
        self.assertEqual(result.event.chain_depth, 5)
        self.assertEqual(result.deliveries, 1)
        self.assertFalse(Observation.objects.exists())

    def test_depth_six_is_stored_blocked_with_an_observation(self) -> None:
        parent = send("sms-in", "+1555", "parent", chain_depth=5)
        result = send("sms-in", "+1555", "loop", chain_depth=6, parent_event_id=parent.event_id)

        self.assertEqual(result.status, "blocked")
        self.assertTrue(result.blocked)
        self.assertEqual(result.reason, "chain_depth_exceeded")
        event = RoomEvent.objects.get(pk=result.event_id)
        self.assertEqual((event.status, event.blocked_by, event.chain_depth), (EventStatus.BLOCKED, "chain_depth_exceeded", 6))
        self.assertEqual(event.seq, parent.seq + 1, "a blocked event still takes its place in the log")
        self.assertEqual(event.parent_event_id, parent.event_id)
        self.assertFalse(Delivery.objects.filter(event=event).exists())

        obs = Observation.objects.get()
        self.assertEqual((obs.room_id, obs.event_id, obs.kind), (self.room_id, event.id, "chain_depth_exceeded"))
        self.assertEqual(obs.data, {"chain_depth": 6, "max": 5})

    def test_blocked_loop_runs_no_broadcast_hooks_but_reports_the_observation(self) -> None:
        before: list[int] = []
        after: list[int] = []
        observed: list[str] = []
        use_hook(self, HookTrigger.BEFORE_BROADCAST, lambda e, c: before.append(e.chain_depth))
        use_hook(self, HookTrigger.AFTER_BROADCAST, lambda e, c: after.append(e.chain_depth))
        use_hook(self, HookTrigger.ON_OBSERVATION, lambda o, c: observed.append(o.kind))

        with self.captureOnCommitCallbacks(execute=True):
            send("sms-in", "+1555", "loop", chain_depth=6)

        self.assertEqual((before, after), ([], []))
        self.assertEqual(observed, ["chain_depth_exceeded"])

    def test_a_hook_cannot_let_a_loop_through(self) -> None:
        use_hook(self, HookTrigger.BEFORE_BROADCAST, lambda e, c: HookResult.modify(content={"type": "text", "body": "x"}))
        result = send("sms-in", "+1555", "loop", chain_depth=7)
        self.assertEqual(result.event.blocked_by, "chain_depth_exceeded")
        self.assertEqual(result.event.content["body"], "loop")

    @override_settings(ROOMKIT_MAX_CHAIN_DEPTH=2)
    def test_maximum_comes_from_settings(self) -> None:
        self.assertEqual(send("sms-in", "+1555", chain_depth=2).status, "stored")
        self.assertEqual(send("sms-in", "+1555", chain_depth=3).status, "blocked")
        self.assertEqual(Observation.objects.get().data, {"chain_depth": 3, "max": 2})

    def test_negative_depth_is_refused(self) -> None:
        before = row_counts()
        with self.assertRaises(InvalidInput):
            send("sms-in", "+1555", chain_depth=-1)
        self.assertEqual(row_counts(), before)

    def test_absurd_depth_is_refused_the_same_on_every_database(self) -> None:
        # The column is a small integer: PostgreSQL would fail the insert with a
        # DataError (a 500) where SQLite stores it; both must give a clean 400.
        before = row_counts()
        with self.assertRaises(InvalidInput):
            send("sms-in", "+1555", chain_depth=40_000)
        self.assertEqual(row_counts(), before)
