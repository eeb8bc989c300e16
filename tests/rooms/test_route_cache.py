"""The per-process route cache: used when valid, never trusted when the room's routing changed.

Routes are cached after commit, so these tests run the on-commit work.
"""

from __future__ import annotations

from django.db import connection, transaction
from django.test import TestCase
from django.test.utils import CaptureQueriesContext

from rooms import services
from rooms.enums import Access, ChannelType, EventStatus
from rooms.inbound import InboundMessage, InboundResult, process_inbound, route_cache
from rooms.models import ChannelBinding, Delivery, Participant, Room
from tests.support import make_channel


class RouteCacheTests(TestCase):
    def setUp(self) -> None:
        route_cache.clear()
        self.addCleanup(route_cache.clear)
        make_channel("sms-in", channel_type=ChannelType.SMS)
        make_channel("crm", channel_type=ChannelType.WEBHOOK, config={"url": "http://127.0.0.1:9/"})

    def send(self, sender: str = "+1555", text: str = "hi") -> InboundResult:
        with self.captureOnCommitCallbacks(execute=True):
            return process_inbound(InboundMessage(channel_id="sms-in", sender=sender, text=text))

    def queries(self, **kwargs) -> tuple[InboundResult, list[str]]:
        with CaptureQueriesContext(connection) as ctx:
            result = self.send(**kwargs)
        return result, [q["sql"] for q in ctx.captured_queries]

    def test_a_known_sender_takes_the_fast_path(self) -> None:
        first = self.send()
        second, sql = self.queries()
        self.assertEqual(second.room_id, first.room_id)
        self.assertEqual(second.seq, first.seq + 1)
        # No routing reads: no binding, participant or room SELECT.
        self.assertFalse([q for q in sql if "rooms_channelbinding" in q or "rooms_participant" in q], sql)
        self.assertEqual(second.event.source_participant_id, first.event.source_participant_id)

    def test_closing_the_room_sends_the_sender_to_a_new_room(self) -> None:
        first = self.send()
        services.room_close(room_id=first.room_id)
        second = self.send()
        self.assertNotEqual(second.room_id, first.room_id)
        self.assertEqual(second.seq, 1)

    def test_a_binding_attached_later_receives_the_next_message(self) -> None:
        first = self.send()
        with self.captureOnCommitCallbacks(execute=True):
            services.channel_attach(room_id=first.room_id, channel_id="crm", address="crm-1")
        second = self.send()
        self.assertEqual(list(Delivery.objects.filter(event=second.event).values_list("channel_id", flat=True)), ["crm"])

    def test_muting_the_senders_binding_blocks_the_next_message(self) -> None:
        first = self.send()
        with self.captureOnCommitCallbacks(execute=True):
            services.channel_mute(room_id=first.room_id, channel_id="sms-in")
        second = self.send()
        self.assertEqual(
            (second.room_id, second.event.status, second.event.blocked_by), (first.room_id, EventStatus.BLOCKED, "muted")
        )

    def test_read_only_access_set_later_is_enforced(self) -> None:
        first = self.send()
        with self.captureOnCommitCallbacks(execute=True):
            services.channel_set_access(room_id=first.room_id, channel_id="sms-in", access=Access.READ_ONLY)
        self.assertEqual(self.send().event.blocked_by, "access:read_only")

    def test_detaching_the_sender_opens_a_new_room(self) -> None:
        first = self.send()
        with self.captureOnCommitCallbacks(execute=True):
            services.channel_detach(room_id=first.room_id, channel_id="sms-in")
        second = self.send()
        self.assertNotEqual(second.room_id, first.room_id)

    def test_the_same_address_bound_in_a_newer_room_wins(self) -> None:
        first = self.send()
        newer = services.room_create(name="escalation")
        with self.captureOnCommitCallbacks(execute=True):
            services.channel_attach(room_id=newer.id, channel_id="sms-in", address="+1555")
        self.assertEqual(self.send().room_id, newer.id)
        self.assertEqual(Room.objects.count(), 2)
        self.assertNotEqual(first.room_id, newer.id)

    def test_a_renamed_participant_is_named_in_the_next_event(self) -> None:
        self.send()
        Participant.objects.filter(address="+1555").update(display_name="Ann")
        # A queryset update sends no signal; saving the row does.
        participant = Participant.objects.get(address="+1555")
        participant.save(update_fields=["display_name"])
        second, _ = self.queries()
        self.assertEqual(second.event.source_participant.display_name, "Ann")

    def test_a_rolled_back_message_does_not_poison_the_cache(self) -> None:
        first = self.send()
        # A binding created and rolled back never reaches the cache.
        try:
            with self.captureOnCommitCallbacks(execute=True), transaction.atomic():
                ChannelBinding.objects.create(room_id=first.room_id, channel_id="crm", address="ghost")
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        second = self.send()
        self.assertEqual(second.room_id, first.room_id)
        self.assertEqual(Delivery.objects.filter(event=second.event).count(), 0)
