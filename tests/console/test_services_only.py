"""The admin never goes around the services: no event is ever deleted, rooms are closed and
bindings detached through ``rooms.services`` (with their hooks and system events), channels,
deliveries and participants are not deleted from under their rooms."""

from __future__ import annotations

from typing import Any

from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import TestCase

from rooms.enums import EventType, RoomStatus
from rooms.hooks import HookTrigger
from rooms.models import AuditEntry, Channel, ChannelBinding, Delivery, Participant, Room, RoomEvent
from tests.console.helpers import chat_room, csrf_post, logged_in, make_user, operator, say, sms_and_web_channels, viewer
from tests.rooms.fixtures import row_counts, seqs, use_hook


class NoBypassTestCase(TestCase):
    def setUp(self) -> None:
        sms_and_web_channels()
        self.room = chat_room("Support")
        say(self.room.pk, "hello")
        # A superuser holds every model permission there is: what is refused here is refused to all.
        self.admin = logged_in(make_user("root", superuser=True))

    def changelist(self, model: str) -> str:
        return f"/admin/rooms/{model}/"

    def run_action(self, client: Any, model: str, action: str, ids: list[Any], **extra: Any):
        with self.captureOnCommitCallbacks(execute=True):
            return csrf_post(client, self.changelist(model), {"action": action, ACTION_CHECKBOX_NAME: ids, **extra})

    def hooked(self, *triggers: HookTrigger) -> list[tuple[str, Any]]:
        calls: list[tuple[str, Any]] = []
        for trigger in triggers:
            use_hook(self, trigger, lambda obj, ctx, t=trigger: calls.append((t.value, obj)))
        return calls


class EventsAreNeverDeletedTests(NoBypassTestCase):
    def test_no_delete_action_no_delete_view(self) -> None:
        event = RoomEvent.objects.filter(room_id=self.room.pk).first()
        before = row_counts()
        html = self.admin.get(self.changelist("roomevent")).content.decode()
        self.assertNotIn('value="delete_selected"', html)
        self.assertEqual(self.admin.get(f"/admin/rooms/roomevent/{event.pk}/delete/").status_code, 403)
        self.assertEqual(csrf_post(self.admin, f"/admin/rooms/roomevent/{event.pk}/delete/", {"post": "yes"}).status_code, 403)
        self.run_action(self.admin, "roomevent", "delete_selected", [event.pk], post="yes")
        self.assertEqual(row_counts(), before)
        self.assertEqual(seqs(self.room.pk), list(range(1, Room.objects.get(pk=self.room.pk).last_seq + 1)))


class RoomsAreClosedNotDeletedTests(NoBypassTestCase):
    def test_delete_is_refused_and_close_goes_through_the_lifecycle_service(self) -> None:
        before = row_counts()
        self.assertEqual(self.admin.get(f"/admin/rooms/room/{self.room.pk}/delete/").status_code, 403)
        self.run_action(self.admin, "room", "delete_selected", [self.room.pk], post="yes")
        self.assertEqual(row_counts(), before)

        html = self.admin.get(self.changelist("room")).content.decode()
        self.assertNotIn('value="delete_selected"', html)
        self.assertIn('value="close_rooms"', html)
        other = chat_room("Other", sender="bob", sms=None)
        calls = self.hooked(HookTrigger.ON_ROOM_CLOSED)
        response = self.run_action(self.admin, "room", "close_rooms", [self.room.pk, other.pk])
        self.assertEqual(response.status_code, 302)
        for room in (self.room, other):
            stored = Room.objects.get(pk=room.pk)
            self.assertEqual(stored.status, RoomStatus.CLOSED)
            last = RoomEvent.objects.filter(room_id=room.pk).order_by("-seq").first()
            self.assertEqual(last.type, EventType.ROOM_CLOSED)
            self.assertEqual(seqs(room.pk), list(range(1, stored.last_seq + 1)))
        self.assertEqual(sorted(obj.id for _, obj in calls), sorted([self.room.pk, other.pk]))
        self.assertEqual(AuditEntry.objects.filter(action="close").count(), 2)

    def test_viewers_and_operators_cannot_delete_and_viewers_cannot_close(self) -> None:
        before = row_counts()
        watcher = logged_in(viewer())
        self.assertNotIn('value="close_rooms"', watcher.get(self.changelist("room")).content.decode())
        self.run_action(watcher, "room", "close_rooms", [self.room.pk])
        self.assertEqual(Room.objects.get(pk=self.room.pk).status, RoomStatus.ACTIVE)
        ops = logged_in(operator())
        self.assertEqual(ops.get(f"/admin/rooms/room/{self.room.pk}/delete/").status_code, 403)
        self.assertEqual(row_counts(), before)


class BindingsAreDetachedThroughTheServiceTests(NoBypassTestCase):
    def binding(self) -> ChannelBinding:
        return ChannelBinding.objects.get(room_id=self.room.pk, channel_id="sms")

    def test_delete_is_refused(self) -> None:
        binding = self.binding()
        before = row_counts()
        self.assertEqual(self.admin.get(f"/admin/rooms/channelbinding/{binding.pk}/delete/").status_code, 403)
        html = self.admin.get(self.changelist("channelbinding")).content.decode()
        self.assertNotIn('value="delete_selected"', html)
        self.run_action(self.admin, "channelbinding", "delete_selected", [binding.pk], post="yes")
        self.assertEqual(row_counts(), before)

    def test_the_detach_action_fires_the_hook_and_records_the_system_event(self) -> None:
        binding = self.binding()
        calls = self.hooked(HookTrigger.ON_CHANNEL_DETACHED)
        self.run_action(logged_in(operator()), "channelbinding", "detach_bindings", [binding.pk])
        self.assertFalse(ChannelBinding.objects.filter(pk=binding.pk).exists())
        last = RoomEvent.objects.filter(room_id=self.room.pk).order_by("-seq").first()
        self.assertEqual((last.type, last.content["data"]["channel_id"]), (EventType.CHANNEL_DETACHED, "sms"))
        self.assertEqual([(t, obj["binding_id"]) for t, obj in calls], [("on_channel_detached", binding.pk)])
        self.assertEqual(AuditEntry.objects.get(action="detach").target, f"binding:{binding.pk}")

    def test_the_room_page_detaches_too_and_viewers_cannot(self) -> None:
        binding = self.binding()
        page = f"/admin/rooms/room/{self.room.pk}/console/"
        watcher = logged_in(viewer())
        self.assertEqual(csrf_post(watcher, page + "action/detach/", {"binding": binding.pk}).status_code, 403)
        self.run_action(watcher, "channelbinding", "detach_bindings", [binding.pk])
        self.assertTrue(ChannelBinding.objects.filter(pk=binding.pk).exists())

        ops = logged_in(operator())
        self.assertIn(f"{page}action/detach/", ops.get(page).content.decode())
        calls = self.hooked(HookTrigger.ON_CHANNEL_DETACHED)
        with self.captureOnCommitCallbacks(execute=True):
            self.assertEqual(csrf_post(ops, page + "action/detach/", {"binding": binding.pk}).status_code, 302)
        self.assertFalse(ChannelBinding.objects.filter(pk=binding.pk).exists())
        self.assertEqual(len(calls), 1)
        self.assertEqual(RoomEvent.objects.filter(room_id=self.room.pk, type=EventType.CHANNEL_DETACHED).count(), 1)


class OtherRowsRoomsDependOnTests(NoBypassTestCase):
    def test_channels_deliveries_and_participants_are_not_deleted(self) -> None:
        say(self.room.pk, "for the sms")
        delivery = Delivery.objects.first()
        participant = Participant.objects.filter(room_id=self.room.pk).first()
        before = row_counts()
        channels = Channel.objects.count()
        for model, pk in (("channel", "sms"), ("delivery", delivery.pk), ("participant", participant.pk)):
            with self.subTest(model=model):
                self.assertEqual(self.admin.get(f"/admin/rooms/{model}/{pk}/delete/").status_code, 403)
                self.assertNotIn('value="delete_selected"', self.admin.get(self.changelist(model)).content.decode())
                self.run_action(self.admin, model, "delete_selected", [pk], post="yes")
        self.assertEqual(row_counts(), before)
        self.assertEqual(Channel.objects.count(), channels)
        # A participant's room and address are the bindings' business, not a form's.
        form = self.admin.get(f"/admin/rooms/participant/{participant.pk}/change/").content.decode()
        self.assertNotIn('name="room"', form)
        self.assertNotIn('name="address"', form)
