"""Room lifecycle services: create, pause, close, reopen, attach, detach, mute, unmute, access; their events and hooks."""

from __future__ import annotations

from typing import Any

from django.test import TestCase

from rooms import services
from rooms.enums import Access, ChannelCategory, ChannelType, EventType, RoomStatus, Visibility
from rooms.errors import Conflict, InvalidInput, NotFound
from rooms.hooks import HookTrigger
from rooms.models import ChannelBinding, Delivery, Participant, Room, RoomEvent
from tests.rooms.fixtures import row_counts, send, seqs, use_hook
from tests.support import make_channel


class HookLog:
    """Records (trigger, payload) for each lifecycle trigger it listens to."""

    def __init__(self, test: TestCase, *triggers: HookTrigger) -> None:
        self.calls: list[tuple[str, Any]] = []
        for trigger in triggers:
            use_hook(test, trigger, self._recorder(trigger))

    def _recorder(self, trigger: HookTrigger):
        def record(payload, ctx):
            self.calls.append((trigger.value, payload))

        return record

    def triggers(self) -> list[str]:
        return [t for t, _ in self.calls]


def last_event(room_id: str) -> RoomEvent:
    return RoomEvent.objects.filter(room_id=room_id).order_by("-seq").first()


class RoomCreateTests(TestCase):
    def test_creates_an_empty_active_room_and_fires_after_commit(self) -> None:
        log = HookLog(self, HookTrigger.ON_ROOM_CREATED)
        with self.captureOnCommitCallbacks(execute=True):
            room = services.room_create(
                name="VIP", metadata={"tier": "gold"}, inactive_after_seconds=60, closed_after_seconds=600
            )
            self.assertEqual(log.calls, [])
        self.assertEqual(log.triggers(), ["on_room_created"])
        self.assertEqual(log.calls[0][1].id, room.id)
        stored = Room.objects.get(pk=room.id)
        self.assertEqual((stored.status, stored.name, stored.metadata), (RoomStatus.ACTIVE, "VIP", {"tier": "gold"}))
        self.assertEqual((stored.inactive_after_seconds, stored.closed_after_seconds, stored.last_seq), (60, 600, 0))
        self.assertIsNotNone(stored.last_activity_at)

    def test_explicit_id_and_its_conflict(self) -> None:
        self.assertEqual(services.room_create(room_id="room-1").id, "room-1")
        log = HookLog(self, HookTrigger.ON_ROOM_CREATED)
        with self.captureOnCommitCallbacks(execute=True), self.assertRaises(Conflict) as caught:
            services.room_create(room_id="room-1")
        self.assertEqual(caught.exception.code, "room_exists")
        self.assertEqual(log.calls, [])
        self.assertEqual(Room.objects.count(), 1)


class RoomStatusTests(TestCase):
    def setUp(self) -> None:
        self.room = services.room_create()
        self.log = HookLog(self, HookTrigger.ON_ROOM_PAUSED, HookTrigger.ON_ROOM_CLOSED, HookTrigger.ON_ROOM_CREATED)

    def test_pause_records_an_internal_event_and_fires_on_room_paused(self) -> None:
        with self.captureOnCommitCallbacks(execute=True):
            room = services.room_pause(room_id=self.room.id, reason="night")
            self.assertEqual(self.log.calls, [])
        self.assertEqual(room.status, RoomStatus.PAUSED)
        self.assertIsNotNone(room.paused_at)
        event = last_event(room.id)
        self.assertEqual((event.seq, event.type, event.visibility), (1, EventType.ROOM_PAUSED, Visibility.INTERNAL))
        self.assertEqual(
            event.content, {"type": "system", "body": "Room paused: night", "code": "room_paused", "data": {"reason": "night"}}
        )
        self.assertEqual(self.log.triggers(), ["on_room_paused"])
        self.assertEqual(self.log.calls[0][1].status, RoomStatus.PAUSED, "the hook sees the committed state")

    def test_close_from_active_or_paused(self) -> None:
        paused = services.room_create()
        services.room_pause(room_id=paused.id)
        for room_id in (self.room.id, paused.id):
            with self.subTest(room_id=room_id):
                with self.captureOnCommitCallbacks(execute=True):
                    room = services.room_close(room_id=room_id, reason="done")
                self.assertEqual(room.status, RoomStatus.CLOSED)
                self.assertIsNotNone(room.closed_at)
                self.assertEqual(last_event(room_id).type, EventType.ROOM_CLOSED)
        self.assertEqual(self.log.triggers(), ["on_room_closed", "on_room_closed"])
        self.assertEqual([p.id for t, p in self.log.calls], [self.room.id, paused.id])

    def test_reopen_a_closed_room(self) -> None:
        services.room_close(room_id=self.room.id)
        room = services.room_reopen(room_id=self.room.id)
        self.assertEqual(room.status, RoomStatus.ACTIVE)
        self.assertIsNone(room.closed_at)
        self.assertEqual(last_event(room.id).type, EventType.ROOM_REOPENED)
        self.assertEqual(seqs(room.id), [1, 2])

    def test_reopened_room_takes_messages_again(self) -> None:
        make_channel("api", channel_type=ChannelType.API, provider="")
        services.room_close(room_id=self.room.id)
        services.room_reopen(room_id=self.room.id)
        self.assertEqual(send("api", "api:1", room_id=self.room.id).status, "stored")

    def test_invalid_transitions_change_nothing_and_fire_nothing(self) -> None:
        services.room_pause(room_id=self.room.id)
        with self.captureOnCommitCallbacks(execute=True):
            with self.assertRaises(Conflict) as caught:
                services.room_pause(room_id=self.room.id)
            self.assertEqual(caught.exception.code, "invalid_transition")
        services.room_close(room_id=self.room.id)
        before = row_counts()
        self.log.calls.clear()
        with self.captureOnCommitCallbacks(execute=True):
            for action in (services.room_pause, services.room_close):
                with self.subTest(action.__name__), self.assertRaises(Conflict):
                    action(room_id=self.room.id)
        active = services.room_create()
        with self.assertRaises(Conflict):
            services.room_reopen(room_id=active.id)
        self.assertEqual(self.log.triggers(), [])
        self.assertEqual(Room.objects.get(pk=self.room.id).status, RoomStatus.CLOSED)
        self.assertEqual(row_counts()["RoomEvent"], before["RoomEvent"])

    def test_unknown_room(self) -> None:
        for action in (services.room_pause, services.room_close, services.room_reopen):
            with self.subTest(action.__name__), self.assertRaises(NotFound):
                action(room_id="nope")


class ChannelLifecycleTests(TestCase):
    def setUp(self) -> None:
        make_channel("sms", channel_type=ChannelType.SMS, provider="")
        make_channel("agent", channel_type=ChannelType.AI, category=ChannelCategory.INTELLIGENCE, provider="")
        self.room = services.room_create()
        self.log = HookLog(
            self,
            HookTrigger.ON_CHANNEL_ATTACHED,
            HookTrigger.ON_CHANNEL_DETACHED,
            HookTrigger.ON_CHANNEL_MUTED,
            HookTrigger.ON_CHANNEL_UNMUTED,
        )

    def attach(self, channel_id: str = "sms", address: str = "+1555", **fields) -> ChannelBinding:
        with self.captureOnCommitCallbacks(execute=True):
            return services.channel_attach(room_id=self.room.id, channel_id=channel_id, address=address, **fields)

    def test_attach_a_transport_makes_a_binding_a_participant_an_event_and_fires(self) -> None:
        binding = self.attach(display_name="Ann", access=Access.READ_ONLY, visibility="transport", metadata={"k": 1})

        stored = ChannelBinding.objects.get(pk=binding.id)
        self.assertEqual(
            (stored.channel_id, stored.address, stored.category, stored.access, stored.muted, stored.visibility, stored.metadata),
            ("sms", "+1555", "transport", "read_only", False, "transport", {"k": 1}),
        )
        participant = Participant.objects.get(pk=stored.participant_id)
        self.assertEqual((participant.room_id, participant.display_name, participant.address), (self.room.id, "Ann", "+1555"))
        event = last_event(self.room.id)
        self.assertEqual((event.type, event.visibility), (EventType.CHANNEL_ATTACHED, Visibility.INTERNAL))
        self.assertEqual(event.content["data"], {"channel_id": "sms", "address": "+1555"})
        self.assertEqual(self.log.triggers(), ["on_channel_attached"])
        self.assertEqual(self.log.calls[0][1].id, binding.id)

    def test_attach_an_agent_makes_no_participant(self) -> None:
        binding = self.attach("agent", "")
        self.assertEqual(binding.category, ChannelCategory.INTELLIGENCE)
        self.assertIsNone(binding.participant_id)
        self.assertFalse(Participant.objects.exists())

    def test_attach_twice_at_the_same_address_is_a_conflict(self) -> None:
        self.attach()
        before = row_counts()
        self.log.calls.clear()
        with self.assertRaises(Conflict) as caught:
            self.attach()
        self.assertEqual(caught.exception.code, "already_attached")
        self.assertEqual(row_counts(), before)
        self.assertEqual(self.log.calls, [])
        self.attach(address="+1666")
        self.assertEqual(ChannelBinding.objects.filter(room=self.room, channel_id="sms").count(), 2)

    def test_attach_refuses_unknown_things(self) -> None:
        with self.assertRaises(NotFound):
            services.channel_attach(room_id=self.room.id, channel_id="ghost")
        with self.assertRaises(NotFound):
            services.channel_attach(room_id="nope", channel_id="sms")
        with self.assertRaises(InvalidInput):
            services.channel_attach(room_id=self.room.id, channel_id="sms", access="sometimes")
        self.assertFalse(ChannelBinding.objects.exists())

    def test_detach_removes_the_binding_records_and_fires(self) -> None:
        binding = self.attach()
        make_channel("api", channel_type=ChannelType.API, provider="")
        with self.captureOnCommitCallbacks(execute=True):
            services.channel_detach(room_id=self.room.id, channel_id="sms")
        self.assertFalse(ChannelBinding.objects.filter(pk=binding.id).exists())
        self.assertEqual(last_event(self.room.id).type, EventType.CHANNEL_DETACHED)
        self.assertEqual(self.log.triggers(), ["on_channel_attached", "on_channel_detached"])
        self.assertEqual(self.log.calls[1][1], {"room_id": self.room.id, "channel_id": "sms", "binding_id": binding.id})
        result = send("api", "api:1", room_id=self.room.id)
        self.assertEqual(result.deliveries, 0, "a detached channel gets nothing")
        self.assertFalse(Delivery.objects.exists())

    def test_detach_by_address_picks_that_binding(self) -> None:
        self.attach(address="+1555")
        keep = self.attach(address="+1666")
        services.channel_detach(room_id=self.room.id, channel_id="sms", address="+1555")
        self.assertEqual(list(ChannelBinding.objects.values_list("id", flat=True)), [keep.id])

    def test_detach_mute_and_access_of_an_unbound_channel(self) -> None:
        for action in (services.channel_detach, services.channel_mute, services.channel_unmute):
            with self.subTest(action.__name__), self.assertRaises(NotFound) as caught:
                action(room_id=self.room.id, channel_id="sms")
            self.assertEqual(caught.exception.code, "not_attached")
        with self.assertRaises(NotFound):
            services.channel_set_access(room_id=self.room.id, channel_id="sms", access=Access.NONE)

    def test_mute_and_unmute(self) -> None:
        binding = self.attach()
        with self.captureOnCommitCallbacks(execute=True):
            services.channel_mute(room_id=self.room.id, channel_id="sms")
            self.assertEqual(self.log.triggers(), ["on_channel_attached"])
        self.assertTrue(ChannelBinding.objects.get(pk=binding.id).muted)
        self.assertEqual(last_event(self.room.id).type, EventType.CHANNEL_MUTED)

        with self.captureOnCommitCallbacks(execute=True):
            services.channel_unmute(room_id=self.room.id, channel_id="sms")
        self.assertFalse(ChannelBinding.objects.get(pk=binding.id).muted)
        self.assertEqual(last_event(self.room.id).type, EventType.CHANNEL_UNMUTED)
        self.assertEqual(self.log.triggers(), ["on_channel_attached", "on_channel_muted", "on_channel_unmuted"])
        self.assertEqual([p.id for _, p in self.log.calls], [binding.id] * 3)

    def test_set_access(self) -> None:
        binding = self.attach()
        services.channel_set_access(room_id=self.room.id, channel_id="sms", access=Access.WRITE_ONLY)
        self.assertEqual(ChannelBinding.objects.get(pk=binding.id).access, Access.WRITE_ONLY)
        event = last_event(self.room.id)
        self.assertEqual(event.type, EventType.CHANNEL_UPDATED)
        self.assertEqual(event.content["data"], {"channel_id": "sms", "access": "write_only"})
        with self.assertRaises(InvalidInput):
            services.channel_set_access(room_id=self.room.id, channel_id="sms", access="everything")
        self.assertEqual(ChannelBinding.objects.get(pk=binding.id).access, Access.WRITE_ONLY)

    def test_every_change_is_in_the_rooms_log_in_order(self) -> None:
        self.attach()
        services.channel_mute(room_id=self.room.id, channel_id="sms")
        services.channel_unmute(room_id=self.room.id, channel_id="sms")
        services.channel_set_access(room_id=self.room.id, channel_id="sms", access=Access.READ_ONLY)
        services.channel_detach(room_id=self.room.id, channel_id="sms")
        services.room_close(room_id=self.room.id)
        types = list(RoomEvent.objects.filter(room=self.room).order_by("seq").values_list("type", flat=True))
        self.assertEqual(
            types,
            ["channel_attached", "channel_muted", "channel_unmuted", "channel_updated", "channel_detached", "room_closed"],
        )
        self.assertEqual(seqs(self.room.id), [1, 2, 3, 4, 5, 6])
