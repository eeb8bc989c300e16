"""Operator actions from the room page: each a CSRF-protected POST through a service, each audited."""

from __future__ import annotations

from django.test import TestCase

from rooms.console.actions import CONSOLE_CHANNEL_ID
from rooms.enums import DeliveryStatus, EventType, ParticipantRole, RoomStatus, Visibility
from rooms.models import AuditEntry, ChannelBinding, Delivery, Room, RoomEvent
from rooms.services import room_pause
from tests.console.helpers import chat_room, csrf_post, logged_in, operator, say, sms_and_web_channels, snapshot


def url(room_id: str, what: str) -> str:
    return f"/admin/rooms/room/{room_id}/console/{what}/"


class OperatorActionTests(TestCase):
    def setUp(self) -> None:
        sms_and_web_channels()
        self.user = operator()
        self.client = logged_in(self.user)
        self.room = chat_room("Support")

    def post(self, what: str, data: dict | None = None):
        response = csrf_post(self.client, url(self.room.pk, what), data or {})
        self.assertEqual(response.status_code, 302, response.content[:300])
        return response

    def audit(self) -> AuditEntry:
        return AuditEntry.objects.order_by("-id").first()

    def test_reply_goes_through_the_inbound_path_to_every_transport(self) -> None:
        self.post("reply", {"text": "Hi Alice, how can I help?", "token": "t-1"})
        event = RoomEvent.objects.filter(room_id=self.room.pk).order_by("-seq").first()
        self.assertEqual(event.type, EventType.MESSAGE)
        self.assertEqual(event.source_channel_id, CONSOLE_CHANNEL_ID)
        self.assertEqual(event.content, {"type": "text", "body": "Hi Alice, how can I help?"})
        self.assertEqual(event.visibility, Visibility.ALL)
        self.assertEqual(event.source_participant.display_name, "Olga")
        self.assertEqual(event.source_participant.role, ParticipantRole.OPERATOR)
        self.assertEqual(event.source_participant.address, "olga")
        # The SMS recipient gets an outbox row; the web-chat user gets it over the socket.
        self.assertEqual(
            list(Delivery.objects.filter(event=event).values_list("channel_id", "recipient")), [("sms", "+15550001111")]
        )
        entry = self.audit()
        self.assertEqual((entry.username, entry.action, entry.room_id, entry.target), ("olga", "reply", self.room.pk, event.id))

    def test_a_double_submitted_reply_is_posted_once(self) -> None:
        self.post("reply", {"text": "only once", "token": "same-token"})
        self.post("reply", {"text": "only once", "token": "same-token"})
        self.assertEqual(RoomEvent.objects.filter(room_id=self.room.pk, content__body="only once").count(), 1)
        self.assertEqual(AuditEntry.objects.filter(action="reply").count(), 1)

    def test_an_empty_reply_changes_nothing(self) -> None:
        before = snapshot(self.room.pk)
        self.post("reply", {"text": "   ", "token": "t-2"})
        self.assertEqual(snapshot(self.room.pk), before)

    def test_note_is_internal_and_delivered_nowhere(self) -> None:
        self.post("note", {"text": "VIP customer", "token": "n-1"})
        event = RoomEvent.objects.filter(room_id=self.room.pk).order_by("-seq").first()
        self.assertEqual((event.type, event.visibility), (EventType.NOTE, Visibility.INTERNAL))
        self.assertFalse(Delivery.objects.filter(event=event).exists())
        self.assertEqual(self.audit().action, "note")

    def test_pause_close_reopen(self) -> None:
        self.post("action/pause")
        self.assertEqual(Room.objects.get(pk=self.room.pk).status, RoomStatus.PAUSED)
        self.post("action/close")
        self.assertEqual(Room.objects.get(pk=self.room.pk).status, RoomStatus.CLOSED)
        self.post("action/reopen")
        self.assertEqual(Room.objects.get(pk=self.room.pk).status, RoomStatus.ACTIVE)
        self.assertEqual(list(AuditEntry.objects.order_by("id").values_list("action", flat=True)), ["pause", "close", "reopen"])
        types = list(RoomEvent.objects.filter(room_id=self.room.pk).values_list("type", flat=True))
        for t in (EventType.ROOM_PAUSED, EventType.ROOM_CLOSED, EventType.ROOM_REOPENED):
            self.assertIn(t, types)

    def test_a_refused_transition_is_reported_and_not_audited(self) -> None:
        room_pause(room_id=self.room.pk)
        before = snapshot(self.room.pk)
        response = csrf_post(self.client, url(self.room.pk, "action/pause"))
        self.assertEqual(snapshot(self.room.pk), before)
        self.assertContains(self.client.get(response["Location"]), "Room is paused, not active")

    def test_mute_unmute_and_set_access_on_a_binding(self) -> None:
        binding = ChannelBinding.objects.get(room_id=self.room.pk, channel_id="sms")
        self.post("action/mute", {"binding": binding.pk})
        self.assertTrue(ChannelBinding.objects.get(pk=binding.pk).muted)
        self.post("action/unmute", {"binding": binding.pk})
        self.assertFalse(ChannelBinding.objects.get(pk=binding.pk).muted)
        self.post("action/set_access", {"binding": binding.pk, "access": "read_only"})
        self.assertEqual(ChannelBinding.objects.get(pk=binding.pk).access, "read_only")
        entry = self.audit()
        self.assertEqual(
            (entry.action, entry.target, entry.data),
            ("set_access", f"binding:{binding.pk}", {"binding": str(binding.pk), "access": "read_only"}),
        )

    def test_a_binding_of_another_room_is_refused(self) -> None:
        other = chat_room("Other", sender="zed", sms=None)
        foreign = ChannelBinding.objects.get(room_id=other.pk, channel_id="web")
        before = snapshot(other.pk)
        self.post("action/mute", {"binding": foreign.pk})
        self.assertEqual(snapshot(other.pk), before)
        self.assertFalse(ChannelBinding.objects.get(pk=foreign.pk).muted)

    def test_set_access_refuses_an_unknown_value(self) -> None:
        binding = ChannelBinding.objects.get(room_id=self.room.pk, channel_id="sms")
        before = snapshot(self.room.pk)
        self.post("action/set_access", {"binding": binding.pk, "access": "everything"})
        self.assertEqual(snapshot(self.room.pk), before)

    def test_retry_a_failed_or_dead_delivery(self) -> None:
        say(self.room.pk, "to sms")
        delivery = Delivery.objects.get(event__room_id=self.room.pk, channel_id="sms")
        for status in (DeliveryStatus.DEAD, DeliveryStatus.FAILED):
            Delivery.objects.filter(pk=delivery.pk).update(status=status, attempts=5)
            with self.captureOnCommitCallbacks(execute=False):
                self.post("action/retry_delivery", {"delivery": delivery.pk})
            delivery.refresh_from_db()
            self.assertEqual((delivery.status, delivery.attempts), (DeliveryStatus.PENDING, 0))
        self.assertEqual(self.audit().target, f"delivery:{delivery.pk}")

    def test_retry_refuses_a_delivery_that_did_not_fail(self) -> None:
        say(self.room.pk, "to sms")
        delivery = Delivery.objects.get(event__room_id=self.room.pk, channel_id="sms")
        Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.SENT)
        before = snapshot(self.room.pk)
        self.post("action/retry_delivery", {"delivery": delivery.pk})
        self.assertEqual(snapshot(self.room.pk), before)

    def test_unknown_action_changes_nothing(self) -> None:
        before = snapshot(self.room.pk)
        self.post("action/explode")
        self.assertEqual(snapshot(self.room.pk), before)

    def test_actions_need_post(self) -> None:
        for what in ("reply", "note", "action/pause"):
            self.assertEqual(self.client.get(url(self.room.pk, what)).status_code, 405)

    def test_actions_need_the_csrf_token(self) -> None:
        before = snapshot(self.room.pk)
        for what, data in (("reply", {"text": "x"}), ("note", {"text": "x"}), ("action/close", {})):
            self.assertEqual(self.client.post(url(self.room.pk, what), data).status_code, 403)
        self.assertEqual(snapshot(self.room.pk), before)


class TimerAndGroupTests(TestCase):
    def setUp(self) -> None:
        sms_and_web_channels()
        self.client = logged_in(operator())
        self.room = chat_room("Timers")

    def test_set_and_clear_the_room_timers(self) -> None:
        path = url(self.room.pk, "action/set_timers")
        csrf_post(self.client, path, {"inactive_after_seconds": "600", "closed_after_seconds": "3600"})
        room = Room.objects.get(pk=self.room.pk)
        self.assertEqual((room.inactive_after_seconds, room.closed_after_seconds), (600, 3600))
        self.assertEqual(AuditEntry.objects.get().data, {"inactive_after_seconds": "600", "closed_after_seconds": "3600"})
        csrf_post(self.client, path, {"inactive_after_seconds": "", "closed_after_seconds": ""})
        room.refresh_from_db()
        self.assertEqual((room.inactive_after_seconds, room.closed_after_seconds), (None, None))

    def test_bad_timer_values_change_nothing(self) -> None:
        before = snapshot(self.room.pk)
        for bad in ("-5", "soon", "0", str(10**9)):
            csrf_post(self.client, url(self.room.pk, "action/set_timers"), {"inactive_after_seconds": bad})
        self.assertEqual(snapshot(self.room.pk), before)
        self.assertIsNone(Room.objects.get(pk=self.room.pk).inactive_after_seconds)

    def test_ensure_console_groups_is_idempotent_and_gives_the_right_permissions(self) -> None:
        from io import StringIO

        from django.contrib.auth.models import Group
        from django.core.management import call_command

        for _ in range(2):
            call_command("ensure_console_groups", stdout=StringIO())
        operator_perms = set(Group.objects.get(name="operator").permissions.values_list("codename", flat=True))
        viewer_perms = set(Group.objects.get(name="viewer").permissions.values_list("codename", flat=True))
        self.assertIn("operate_console", operator_perms)
        self.assertNotIn("operate_console", viewer_perms)
        # Operators also keep the team's saved replies and labels; nothing else is theirs to edit.
        keep = {f"{verb}_{model}" for verb in ("add", "change", "delete") for model in ("cannedresponse", "label")}
        self.assertEqual(operator_perms - viewer_perms, {"operate_console", *keep})
        self.assertTrue(
            {"view_room", "view_roomevent", "view_delivery", "view_auditentry", "view_cannedresponse"} <= viewer_perms
        )
        self.assertFalse(any(p.startswith(("change_", "add_", "delete_")) for p in operator_perms - keep))
