"""Room timers: idle active rooms pause, rooms paused too long close; one pass per sweep (service or command)."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

from django.core.management import call_command
from django.test import TestCase
from django.utils import timezone

from rooms import services
from rooms.enums import ChannelType, EventType, RoomStatus
from rooms.hooks import HookTrigger
from rooms.models import Room, RoomEvent
from tests.rooms.fixtures import send, use_hook
from tests.support import make_channel

INACTIVE = 300
CLOSED = 3600


def timed_room(**fields) -> Room:
    fields = {"inactive_after_seconds": INACTIVE, "closed_after_seconds": CLOSED, **fields}
    return services.room_create(**fields)


def set_times(room: Room, **times) -> None:
    Room.objects.filter(pk=room.pk).update(**times)


def status(room: Room) -> str:
    return Room.objects.get(pk=room.pk).status


class SweepTests(TestCase):
    def test_nothing_changes_before_the_inactive_timer(self) -> None:
        room = timed_room()
        t0 = Room.objects.get(pk=room.pk).last_activity_at
        self.assertEqual(services.sweep_room_timers(now=t0 + timedelta(seconds=INACTIVE - 1)), [])
        self.assertEqual(status(room), RoomStatus.ACTIVE)

    def test_an_idle_room_pauses_at_its_inactive_timer(self) -> None:
        room = timed_room()
        t0 = Room.objects.get(pk=room.pk).last_activity_at
        done = services.sweep_room_timers(now=t0 + timedelta(seconds=INACTIVE))
        self.assertEqual(done, [(room.id, RoomStatus.PAUSED)])
        stored = Room.objects.get(pk=room.pk)
        self.assertEqual(stored.status, RoomStatus.PAUSED)
        self.assertIsNotNone(stored.paused_at)
        event = RoomEvent.objects.get(room=room)
        self.assertEqual((event.type, event.content["data"]), (EventType.ROOM_PAUSED, {"reason": "inactive"}))

    def test_a_paused_room_closes_only_once_paused_for_the_closed_timer(self) -> None:
        room = timed_room()
        t0 = Room.objects.get(pk=room.pk).last_activity_at
        paused_at = t0 + timedelta(seconds=INACTIVE)
        services.sweep_room_timers(now=paused_at)
        self.assertEqual(status(room), RoomStatus.PAUSED)

        self.assertEqual(services.sweep_room_timers(now=paused_at + timedelta(seconds=CLOSED - 1)), [])
        self.assertEqual(status(room), RoomStatus.PAUSED)

        done = services.sweep_room_timers(now=paused_at + timedelta(seconds=CLOSED))
        self.assertEqual(done, [(room.id, RoomStatus.CLOSED)])
        stored = Room.objects.get(pk=room.pk)
        self.assertEqual(stored.status, RoomStatus.CLOSED)
        self.assertIsNotNone(stored.closed_at)
        self.assertEqual(
            list(RoomEvent.objects.filter(room=room).order_by("seq").values_list("type", flat=True)),
            [EventType.ROOM_PAUSED, EventType.ROOM_CLOSED],
        )

    def test_the_times_stamped_are_the_sweeps_now(self) -> None:
        room = timed_room()
        later = timezone.now() + timedelta(days=1)
        services.sweep_room_timers(now=later)
        self.assertEqual(Room.objects.get(pk=room.pk).paused_at, later)
        services.sweep_room_timers(now=later + timedelta(seconds=CLOSED))
        self.assertEqual(Room.objects.get(pk=room.pk).closed_at, later + timedelta(seconds=CLOSED))

    def test_a_room_paused_by_hand_closes_after_its_closed_timer(self) -> None:
        room = timed_room()
        services.room_pause(room_id=room.id)
        paused_at = Room.objects.get(pk=room.pk).paused_at
        self.assertEqual(services.sweep_room_timers(now=paused_at + timedelta(seconds=CLOSED - 1)), [])
        self.assertEqual(services.sweep_room_timers(now=paused_at + timedelta(seconds=CLOSED)), [(room.id, RoomStatus.CLOSED)])

    def test_rooms_without_timers_never_change(self) -> None:
        untimed = services.room_create()
        pause_only = timed_room(closed_after_seconds=None)
        far = timezone.now() + timedelta(days=365)
        self.assertEqual(services.sweep_room_timers(now=far), [(pause_only.id, RoomStatus.PAUSED)])
        self.assertEqual(services.sweep_room_timers(now=far + timedelta(days=365)), [])
        self.assertEqual((status(untimed), status(pause_only)), (RoomStatus.ACTIVE, RoomStatus.PAUSED))

    def test_a_message_restarts_the_inactive_timer(self) -> None:
        make_channel(
            "sms-in", channel_type=ChannelType.SMS, provider="", config={"room_timers": {"inactive_after_seconds": INACTIVE}}
        )
        first = send("sms-in", "+1555")
        room = Room.objects.get(pk=first.room_id)
        set_times(room, last_activity_at=room.last_activity_at - timedelta(seconds=INACTIVE - 10))
        send("sms-in", "+1555")
        self.assertEqual(services.sweep_room_timers(now=timezone.now() + timedelta(seconds=INACTIVE - 10)), [])
        self.assertEqual(status(room), RoomStatus.ACTIVE)

    def test_a_message_into_a_paused_room_stops_the_closed_timer(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS, provider="", config={"room_timers": {"closed_after_seconds": 60}})
        room = Room.objects.get(pk=send("sms-in", "+1555").room_id)
        services.room_pause(room_id=room.id)
        send("sms-in", "+1555")
        self.assertEqual(services.sweep_room_timers(now=timezone.now() + timedelta(days=1)), [])
        self.assertEqual(status(room), RoomStatus.ACTIVE)

    def test_paused_room_without_paused_at_counts_from_its_last_activity(self) -> None:
        room = timed_room()
        set_times(room, status=RoomStatus.PAUSED, paused_at=None)
        last = Room.objects.get(pk=room.pk).last_activity_at
        self.assertEqual(services.sweep_room_timers(now=last + timedelta(seconds=CLOSED - 1)), [])
        self.assertEqual(services.sweep_room_timers(now=last + timedelta(seconds=CLOSED)), [(room.id, RoomStatus.CLOSED)])

    def test_closed_rooms_are_left_alone(self) -> None:
        room = timed_room()
        services.room_close(room_id=room.id)
        self.assertEqual(services.sweep_room_timers(now=timezone.now() + timedelta(days=30)), [])

    def test_transitions_fire_their_hooks(self) -> None:
        seen: list[tuple[str, str]] = []
        use_hook(self, HookTrigger.ON_ROOM_PAUSED, lambda room, ctx: seen.append(("paused", room.id)))
        use_hook(self, HookTrigger.ON_ROOM_CLOSED, lambda room, ctx: seen.append(("closed", room.id)))
        room = timed_room()
        later = timezone.now() + timedelta(seconds=INACTIVE)
        with self.captureOnCommitCallbacks(execute=True):
            services.sweep_room_timers(now=later)
        with self.captureOnCommitCallbacks(execute=True):
            services.sweep_room_timers(now=later + timedelta(seconds=CLOSED))
        self.assertEqual(seen, [("paused", room.id), ("closed", room.id)])

    def test_a_second_sweep_at_the_same_time_changes_nothing(self) -> None:
        room = timed_room()
        later = timezone.now() + timedelta(seconds=INACTIVE)
        self.assertEqual(len(services.sweep_room_timers(now=later)), 1)
        self.assertEqual(services.sweep_room_timers(now=later), [])
        self.assertEqual(RoomEvent.objects.filter(room=room).count(), 1)


class SweepCommandTests(TestCase):
    def test_one_pass_on_the_real_clock(self) -> None:
        idle = timed_room()
        long_paused = timed_room()
        fresh = timed_room()
        now = timezone.now()
        set_times(idle, last_activity_at=now - timedelta(seconds=INACTIVE + 5))
        set_times(long_paused, status=RoomStatus.PAUSED, paused_at=now - timedelta(seconds=CLOSED + 5))

        out = StringIO()
        call_command("sweep_rooms", stdout=out)

        self.assertEqual(status(idle), RoomStatus.PAUSED)
        self.assertEqual(status(long_paused), RoomStatus.CLOSED)
        self.assertIsNotNone(Room.objects.get(pk=long_paused.pk).closed_at)
        self.assertEqual(status(fresh), RoomStatus.ACTIVE)
        lines = out.getvalue().splitlines()
        self.assertIn(f"{idle.id} -> paused", lines)
        self.assertIn(f"{long_paused.id} -> closed", lines)
        self.assertIn("2 room(s) changed", lines)
        self.assertEqual(lines[-1], "0 snoozed conversation(s) reopened")

    def test_nothing_to_do(self) -> None:
        timed_room()
        out = StringIO()
        call_command("sweep_rooms", stdout=out)
        self.assertEqual(out.getvalue().splitlines(), ["0 room(s) changed", "0 snoozed conversation(s) reopened"])
