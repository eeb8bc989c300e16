"""Routing: which room an inbound message lands in, and when a room is opened."""

from __future__ import annotations

from django.test import TestCase

from rooms import services
from rooms.enums import ChannelCategory, ChannelType, IdentificationStatus, ParticipantRole, RoomStatus
from rooms.errors import Conflict, Forbidden, InvalidInput, NotFound
from rooms.hooks import HookTrigger
from rooms.models import ChannelBinding, Participant, Room, RoomEvent
from tests.rooms.fixtures import row_counts, send, use_hook
from tests.support import make_channel


class FirstMessageTests(TestCase):
    def setUp(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS, provider="")

    def test_opens_an_active_room_bound_to_the_sender(self) -> None:
        result = send("sms-in", "+15550001", "hi")

        self.assertEqual(result.status, "stored")
        self.assertEqual(result.seq, 1)
        room = Room.objects.get(pk=result.room_id)
        self.assertEqual(room.status, RoomStatus.ACTIVE)
        self.assertEqual(room.last_seq, 1)
        binding = ChannelBinding.objects.get(room=room)
        self.assertEqual((binding.channel_id, binding.address, binding.category), ("sms-in", "+15550001", "transport"))
        participant = Participant.objects.get(room=room)
        self.assertEqual((participant.address, participant.role), ("+15550001", ParticipantRole.MEMBER))
        self.assertEqual(binding.participant_id, participant.id)
        event = RoomEvent.objects.get(room=room)
        self.assertEqual(event.source_participant_id, participant.id)
        self.assertEqual(event.source_channel_id, "sms-in")
        self.assertEqual(event.content, {"type": "text", "body": "hi"})

    def test_fires_on_room_created_after_commit(self) -> None:
        created: list[str] = []
        use_hook(self, HookTrigger.ON_ROOM_CREATED, lambda room, ctx: created.append(room.id))

        with self.captureOnCommitCallbacks(execute=True):
            result = send("sms-in", "+15550001")
            self.assertEqual(created, [])
        self.assertEqual(created, [result.room_id])

        with self.captureOnCommitCallbacks(execute=True):
            send("sms-in", "+15550001")
        self.assertEqual(created, [result.room_id], "a second message opens no room")

    def test_takes_the_channels_room_timers(self) -> None:
        make_channel("sms-timed", channel_type=ChannelType.SMS, config={"room_timers": {"inactive_after_seconds": 60}})
        room = Room.objects.get(pk=send("sms-timed", "+1555").room_id)
        self.assertEqual((room.inactive_after_seconds, room.closed_after_seconds), (60, None))

    def test_attach_on_create_binds_the_listed_enabled_channels(self) -> None:
        make_channel("agent", channel_type=ChannelType.AI, category=ChannelCategory.INTELLIGENCE, provider="")
        make_channel("crm", channel_type=ChannelType.WEBHOOK)
        make_channel("off", channel_type=ChannelType.WEBHOOK, enabled=False)
        make_channel(
            "sms-bring",
            channel_type=ChannelType.SMS,
            config={"attach_on_create": ["agent", "crm", "off", "missing", "sms-bring"]},
        )
        room_id = send("sms-bring", "+1555").room_id
        bound = dict(ChannelBinding.objects.filter(room_id=room_id).values_list("channel_id", "category"))
        self.assertEqual(bound, {"sms-bring": "transport", "agent": "intelligence", "crm": "transport"})


class ExistingRoomTests(TestCase):
    def setUp(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS)
        make_channel("wa-in", channel_type=ChannelType.WHATSAPP)

    def test_same_sender_same_channel_reuses_the_room_and_participant(self) -> None:
        first = send("sms-in", "+1555")
        second = send("sms-in", "+1555")
        self.assertEqual(second.room_id, first.room_id)
        self.assertEqual((first.seq, second.seq), (1, 2))
        self.assertEqual(Participant.objects.filter(room_id=first.room_id).count(), 1)
        self.assertEqual(first.event.source_participant_id, second.event.source_participant_id)

    def test_other_sender_or_other_channel_gets_another_room(self) -> None:
        a = send("sms-in", "+1555")
        b = send("sms-in", "+1666")
        c = send("wa-in", "+1555")
        self.assertEqual(len({a.room_id, b.room_id, c.room_id}), 3)
        self.assertEqual((a.seq, b.seq, c.seq), (1, 1, 1))

    def test_sender_attached_by_an_operator_is_routed_to_that_room(self) -> None:
        room = services.room_create(name="support")
        services.channel_attach(room_id=room.id, channel_id="sms-in", address="+1777", display_name="Ann")
        result = send("sms-in", "+1777")
        self.assertEqual(result.room_id, room.id)
        self.assertEqual(Room.objects.count(), 1)
        self.assertEqual(result.event.source_participant.display_name, "Ann")

    def test_closed_room_is_not_reused_a_new_one_opens(self) -> None:
        first = send("sms-in", "+1555")
        services.room_close(room_id=first.room_id)
        again = send("sms-in", "+1555")
        self.assertNotEqual(again.room_id, first.room_id)
        self.assertEqual(again.seq, 1)
        self.assertEqual(Room.objects.get(pk=first.room_id).status, RoomStatus.CLOSED)

    def test_a_message_wakes_a_paused_room(self) -> None:
        first = send("sms-in", "+1555")
        services.room_pause(room_id=first.room_id)
        paused = Room.objects.get(pk=first.room_id)
        self.assertEqual(paused.status, RoomStatus.PAUSED)
        self.assertIsNotNone(paused.paused_at)

        again = send("sms-in", "+1555")
        self.assertEqual(again.room_id, first.room_id)
        room = Room.objects.get(pk=first.room_id)
        self.assertEqual(room.status, RoomStatus.ACTIVE)
        self.assertIsNone(room.paused_at)
        self.assertGreater(room.last_activity_at, paused.last_activity_at)


class ExplicitRoomTests(TestCase):
    def setUp(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS)
        make_channel("api", channel_type=ChannelType.API, provider="")
        self.room = services.room_create()

    def test_api_channel_attaches_itself_on_first_use(self) -> None:
        result = send("api", "api:1:bob", room_id=self.room.id, display_name="Bob")
        self.assertEqual(result.room_id, self.room.id)
        binding = ChannelBinding.objects.get(room=self.room, channel_id="api")
        self.assertEqual(binding.address, "api:1:bob")
        self.assertEqual(result.event.source_participant.display_name, "Bob")
        self.assertEqual(send("api", "api:1:bob", room_id=self.room.id).seq, 2)
        self.assertEqual(ChannelBinding.objects.filter(room=self.room).count(), 1)

    def test_each_api_sender_speaks_as_themselves(self) -> None:
        bob = send("api", "api:1:bob", room_id=self.room.id, display_name="Bob")
        alice = send("api", "api:2:alice", room_id=self.room.id, display_name="Alice")
        self.assertNotEqual(alice.event.source_participant_id, bob.event.source_participant_id)
        self.assertEqual(alice.event.source_participant.display_name, "Alice")
        self.assertEqual(
            sorted(ChannelBinding.objects.filter(room=self.room, channel_id="api").values_list("address", flat=True)),
            ["api:1:bob", "api:2:alice"],
        )

    def test_a_stranger_cannot_speak_through_an_attached_senders_binding(self) -> None:
        services.channel_attach(room_id=self.room.id, channel_id="sms-in", address="+15550101", display_name="Ann")
        before = row_counts()
        with self.assertRaises(Forbidden) as caught:
            send("sms-in", "+15550666", room_id=self.room.id)
        self.assertEqual(caught.exception.code, "not_attached")
        self.assertEqual(row_counts(), before)

    def test_a_channel_bound_without_address_takes_any_sender(self) -> None:
        make_channel("crm", channel_type=ChannelType.WEBHOOK, provider="")
        binding = services.channel_attach(room_id=self.room.id, channel_id="crm")
        result = send("crm", "agent-7", room_id=self.room.id, display_name="Agent 7")
        self.assertEqual(result.status, "stored")
        self.assertEqual(ChannelBinding.objects.filter(room=self.room, channel_id="crm").get().id, binding.id)

    def test_transport_that_is_not_attached_is_refused(self) -> None:
        before = row_counts()
        with self.assertRaises(Forbidden) as caught:
            send("sms-in", "+1555", room_id=self.room.id)
        self.assertEqual(caught.exception.code, "not_attached")
        self.assertEqual(row_counts(), before)

    def test_unknown_room(self) -> None:
        with self.assertRaises(NotFound) as caught:
            send("api", "x", room_id="nope")
        self.assertEqual(caught.exception.code, "unknown_room")

    def test_closed_room_refuses_messages(self) -> None:
        services.room_close(room_id=self.room.id)
        last_seq = Room.objects.get(pk=self.room.id).last_seq
        with self.assertRaises(Conflict) as caught:
            send("api", "x", room_id=self.room.id)
        self.assertEqual(caught.exception.code, "room_closed")
        self.assertEqual(Room.objects.get(pk=self.room.id).last_seq, last_seq)

    def test_participant_of_another_room_is_refused(self) -> None:
        other = send("sms-in", "+1555")
        with self.assertRaises(Forbidden) as caught:
            send("api", "x", room_id=self.room.id, participant_id=other.event.source_participant_id)
        self.assertEqual(caught.exception.code, "not_a_participant")

    def test_given_participant_is_the_source(self) -> None:
        first = send("sms-in", "+1555")
        again = send("sms-in", "+1555", room_id=first.room_id, participant_id=first.event.source_participant_id)
        self.assertEqual(again.event.source_participant_id, first.event.source_participant_id)

    def test_console_sender_is_an_operator(self) -> None:
        make_channel("console", channel_type=ChannelType.CONSOLE, provider="")
        result = send("console", "staff:1", room_id=self.room.id)
        self.assertEqual(result.event.source_participant.role, ParticipantRole.OPERATOR)


class RefusedTests(TestCase):
    def test_channel_that_does_not_open_rooms(self) -> None:
        make_channel("closed-door", channel_type=ChannelType.SMS, creates_rooms=False)
        before = row_counts()
        with self.assertRaises(Forbidden) as caught:
            send("closed-door", "+1555")
        self.assertEqual(caught.exception.code, "no_room")
        self.assertEqual(row_counts(), before)

    def test_channel_that_does_not_open_rooms_still_reaches_attached_senders(self) -> None:
        make_channel("closed-door", channel_type=ChannelType.SMS, creates_rooms=False)
        room = services.room_create()
        services.channel_attach(room_id=room.id, channel_id="closed-door", address="+1555")
        self.assertEqual(send("closed-door", "+1555").room_id, room.id)

    def test_disabled_channel(self) -> None:
        make_channel("off", channel_type=ChannelType.SMS, enabled=False)
        with self.assertRaises(Forbidden) as caught:
            send("off", "+1555")
        self.assertEqual(caught.exception.code, "channel_disabled")
        self.assertEqual(Room.objects.count(), 0)

    def test_unknown_channel(self) -> None:
        with self.assertRaises(NotFound) as caught:
            send("ghost", "+1555")
        self.assertEqual(caught.exception.code, "unknown_channel")

    def test_no_sender_and_no_room(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS)
        with self.assertRaises(InvalidInput) as caught:
            send("sms-in", "")
        self.assertEqual(caught.exception.code, "no_sender")
        self.assertEqual(Room.objects.count(), 0)

    def test_no_channel_and_no_room(self) -> None:
        with self.assertRaises(InvalidInput) as caught:
            send(None, "+1555")
        self.assertEqual(caught.exception.code, "no_channel")


class IdentifiedOnFirstContactTests(TestCase):
    def test_known_address_makes_an_identified_participant(self) -> None:
        from rooms.models import Identity, IdentityAddress

        make_channel("sms-in", channel_type=ChannelType.SMS)
        ann = Identity.objects.create(display_name="Ann Lee")
        IdentityAddress.objects.create(identity=ann, channel_type=ChannelType.SMS, address="+1555")
        participant = send("sms-in", "+1555").event.source_participant
        self.assertEqual(participant.identity_id, ann.id)
        self.assertEqual(participant.identification, IdentificationStatus.IDENTIFIED)
        self.assertEqual(participant.display_name, "Ann Lee")
