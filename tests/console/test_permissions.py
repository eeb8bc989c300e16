"""Who may do what: staff only, viewers read, operators act, superusers configure channels; audit is read-only."""

from __future__ import annotations

from django.test import TestCase, override_settings

from rooms.console.actions import can_operate
from rooms.enums import DeliveryStatus
from rooms.models import AuditEntry, Channel, ChannelBinding, Delivery, Room, RoomEvent
from tests.console.helpers import (
    chat_room,
    csrf_post,
    logged_in,
    make_user,
    operator,
    say,
    sms_and_web_channels,
    snapshot,
    viewer,
)


class ViewerCannotActTests(TestCase):
    def setUp(self) -> None:
        sms_and_web_channels()
        self.room = chat_room("Support")
        say(self.room.pk, "to sms")
        self.delivery = Delivery.objects.get(event__room_id=self.room.pk, channel_id="sms")
        Delivery.objects.filter(pk=self.delivery.pk).update(status=DeliveryStatus.DEAD)
        self.binding = ChannelBinding.objects.get(room_id=self.room.pk, channel_id="sms")
        self.viewer = viewer()
        self.client = logged_in(self.viewer)

    def test_a_viewer_is_refused_every_action_and_nothing_changes(self) -> None:
        base = f"/admin/rooms/room/{self.room.pk}/console/"
        posts = [
            ("reply/", {"text": "hi", "token": "v1"}),
            ("note/", {"text": "note", "token": "v2"}),
            ("action/pause/", {}),
            ("action/close/", {}),
            ("action/reopen/", {}),
            ("action/mute/", {"binding": self.binding.pk}),
            ("action/unmute/", {"binding": self.binding.pk}),
            ("action/set_access/", {"binding": self.binding.pk, "access": "none"}),
            ("action/retry_delivery/", {"delivery": self.delivery.pk}),
            ("action/takeover/", {}),
            ("action/handback/", {"agent": "triage"}),
            ("action/handoff/", {"agent": "triage"}),
        ]
        before = snapshot(self.room.pk)
        for path, data in posts:
            with self.subTest(path=path):
                self.assertEqual(csrf_post(self.client, base + path, data).status_code, 403)
                self.assertEqual(snapshot(self.room.pk), before)
        self.assertFalse(AuditEntry.objects.exists())
        self.assertFalse(can_operate(self.viewer))

    def test_a_viewer_cannot_send_a_test_message_or_edit_a_channel(self) -> None:
        before = Room.objects.count(), RoomEvent.objects.count()
        response = csrf_post(
            self.client,
            "/admin/rooms/channel/",
            {"action": "send_test_message", "_selected_action": ["sms"], "recipient": "+15550009999"},
        )
        self.assertIn(response.status_code, (302, 403))
        self.assertEqual((Room.objects.count(), RoomEvent.objects.count()), before)
        response = csrf_post(
            self.client, "/admin/rooms/channel/sms/change/", {"id": "sms", "name": "hacked", "channel_type": "sms"}
        )
        self.assertEqual(response.status_code, 403)
        self.assertNotEqual(Channel.objects.get(pk="sms").name, "hacked")


class AccessTests(TestCase):
    def setUp(self) -> None:
        sms_and_web_channels()
        self.room = chat_room("Support")

    def test_anonymous_and_non_staff_users_are_sent_to_the_login(self) -> None:
        page = f"/admin/rooms/room/{self.room.pk}/console/"
        for client in (logged_in(make_user("nostaff", staff=False)), self.client):
            response = client.get(page)
            self.assertEqual(response.status_code, 302)
            self.assertIn("/admin/login/", response["Location"])
            response = csrf_post(client, page + "reply/", {"text": "hi"})
            self.assertEqual(response.status_code, 302)
        self.assertFalse(RoomEvent.objects.filter(room_id=self.room.pk, type="message").exists())

    def test_staff_outside_the_console_groups_cannot_read_rooms(self) -> None:
        client = logged_in(make_user("stranger"))
        self.assertEqual(client.get("/admin/rooms/room/").status_code, 403)
        self.assertEqual(client.get(f"/admin/rooms/room/{self.room.pk}/console/").status_code, 403)
        self.assertEqual(csrf_post(client, f"/admin/rooms/room/{self.room.pk}/console/action/close/").status_code, 403)

    def test_operators_and_superusers_may_act(self) -> None:
        self.assertTrue(can_operate(operator()))
        self.assertTrue(can_operate(make_user("root", superuser=True)))


@override_settings(PUBLIC_BASE_URL="https://rk.example.com")
class ChannelAdminTests(TestCase):
    def setUp(self) -> None:
        sms_and_web_channels()
        channel = Channel.objects.get(pk="sms")
        channel.set_secrets({"signing_secret": "s3cret-value-xyz"})
        channel.save()
        self.root = make_user("root", superuser=True)

    def test_superusers_see_which_secrets_are_set_never_their_values_and_the_webhook_url(self) -> None:
        html = logged_in(self.root).get("/admin/rooms/channel/sms/change/").content.decode()
        self.assertIn("signing_secret", html)
        self.assertNotIn("s3cret-value-xyz", html)
        self.assertIn("https://rk.example.com/webhooks/sms/", html)
        self.assertNotIn(Channel.objects.get(pk="sms").secrets_encrypted, html)

    def test_operators_see_neither_secrets_nor_an_edit_form(self) -> None:
        client = logged_in(operator())
        Channel.objects.get(pk="sms")
        from django.contrib.auth.models import Group, Permission

        # Even with the model's view permission, secrets' presence stays with superusers.
        Group.objects.get(name="operator").permissions.add(Permission.objects.get(codename="view_channel"))
        response = client.get("/admin/rooms/channel/sms/change/")
        self.assertEqual(response.status_code, 200)
        html = response.content.decode()
        self.assertNotIn("signing_secret", html)
        self.assertNotIn("new_secrets", html)
        self.assertNotIn('type="submit" value="Save"', html)

    def test_superusers_set_secrets_write_only(self) -> None:
        client = logged_in(self.root)
        response = csrf_post(
            client,
            "/admin/rooms/channel/sms/change/",
            {
                "id": "sms",
                "name": "SMS",
                "channel_type": "sms",
                "category": "transport",
                "provider": "http",
                "config": '{"url": "http://127.0.0.1:9/never"}',
                "capabilities": "{}",
                "creates_rooms": "on",
                "enabled": "on",
                "new_secrets": '{"auth_token": "tok-123"}',
            },
        )
        self.assertEqual(response.status_code, 302, response.content[:500])
        channel = Channel.objects.get(pk="sms")
        self.assertEqual(channel.secret_names, ["auth_token", "signing_secret"])
        self.assertEqual(channel.get_secret("auth_token"), "tok-123")
        self.assertNotIn("tok-123", client.get("/admin/rooms/channel/sms/change/").content.decode())

    def test_send_test_message_plans_a_delivery_through_the_inbound_path(self) -> None:
        client = logged_in(self.root)
        with self.captureOnCommitCallbacks(execute=False):
            response = csrf_post(
                client,
                "/admin/rooms/channel/",
                {"action": "send_test_message", "_selected_action": ["sms"], "recipient": "+15550007777", "text": "ping"},
            )
        self.assertEqual(response.status_code, 302)
        delivery = Delivery.objects.get(channel_id="sms", recipient="+15550007777")
        self.assertEqual(delivery.event.content["body"], "ping")
        self.assertEqual(delivery.event.source_channel_id, "console")
        self.assertEqual(AuditEntry.objects.filter(action="send_test_message", username="root").count(), 1)

    def test_the_action_first_asks_for_the_recipient(self) -> None:
        response = csrf_post(
            logged_in(self.root), "/admin/rooms/channel/", {"action": "send_test_message", "_selected_action": ["sms"]}
        )
        self.assertEqual(response.status_code, 200)
        self.assertContains(response, 'name="recipient"')
        self.assertFalse(Delivery.objects.exists())


class AuditAdminTests(TestCase):
    def test_audit_entries_are_listed_and_read_only(self) -> None:
        sms_and_web_channels()
        room = chat_room("Support")
        op = operator()
        csrf_post(logged_in(op), f"/admin/rooms/room/{room.pk}/console/action/pause/")
        entry = AuditEntry.objects.get()
        client = logged_in(viewer())
        html = client.get("/admin/rooms/auditentry/").content.decode()
        self.assertIn("olga", html)
        self.assertIn("pause", html)
        response = client.get(f"/admin/rooms/auditentry/{entry.pk}/change/")
        self.assertEqual(response.status_code, 200)
        self.assertNotContains(response, 'value="Save"')
        root = logged_in(make_user("root", superuser=True))
        self.assertEqual(root.get("/admin/rooms/auditentry/add/").status_code, 403)
        self.assertEqual(csrf_post(root, f"/admin/rooms/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code, 403)
        self.assertTrue(AuditEntry.objects.filter(pk=entry.pk).exists())
