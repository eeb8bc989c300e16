"""The admin index's dashboard: open rooms, messages per channel (chart), failed/dead deliveries, first response."""

from __future__ import annotations

from datetime import timedelta

from django.test import TestCase
from django.utils import timezone

from rooms.console.actions import console_reply
from rooms.console.selectors import dashboard_stats, first_response_seconds
from rooms.enums import DeliveryStatus
from rooms.models import Delivery, RoomEvent
from rooms.services import room_close
from tests.console.helpers import chat_room, logged_in, make_user, operator, say, sms_and_web_channels, viewer


def answered_room(name: str, user, *, after_seconds: float) -> str:
    room = chat_room(name, sms=None)
    asked = say(room.pk, "help please").event
    replied = console_reply(user=user, room_id=room.pk, text="On it").event
    t0 = timezone.now() - timedelta(hours=1)
    RoomEvent.objects.filter(pk=asked.pk).update(created_at=t0)
    RoomEvent.objects.filter(pk=replied.pk).update(created_at=t0 + timedelta(seconds=after_seconds))
    return room.pk


class DashboardTests(TestCase):
    def setUp(self) -> None:
        sms_and_web_channels()
        self.user = operator()

    def test_counts_chart_and_median_first_response(self) -> None:
        answered_room("a", self.user, after_seconds=30)
        answered_room("b", self.user, after_seconds=90)
        answered_room("c", self.user, after_seconds=600)
        unanswered = chat_room("d")
        say(unanswered.pk, "hello?")
        say(unanswered.pk, "anyone?")
        closed = chat_room("e", sms=None)
        room_close(room_id=closed.pk)
        delivery = Delivery.objects.filter(channel_id="sms").first()
        Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.DEAD)
        say(unanswered.pk, "third")
        Delivery.objects.filter(channel_id="sms", status=DeliveryStatus.PENDING).update(status=DeliveryStatus.FAILED)

        stats = dashboard_stats()
        self.assertEqual(stats.open_rooms, 4)
        self.assertEqual(stats.dead_deliveries, 1)
        self.assertEqual(stats.failed_deliveries, 2)
        self.assertEqual(sorted(first_response_seconds()), [30.0, 90.0, 600.0])
        self.assertEqual(stats.median_first_response_seconds, 90.0)
        volumes = {v.channel_id: v.count for v in stats.messages_24h}
        self.assertEqual(volumes, {"web": 6, "console": 3})

        html = logged_in(self.user).get("/admin/").content.decode()
        self.assertIn('id="rk-open-rooms">4<', html)
        self.assertIn('id="rk-dead">1<', html)
        self.assertIn('id="rk-failed">2<', html)
        self.assertIn("1 min 30 s", html)
        self.assertIn('<svg id="rk-messages-chart"', html)
        self.assertIn('data-channel="web" data-count="6"', html)
        self.assertIn('data-channel="console" data-count="3"', html)
        self.assertNotIn('<script src="http', html)  # no CDN

    def test_a_greeting_before_the_customer_speaks_is_not_a_first_response(self) -> None:
        room = chat_room("greeted", sms=None)
        greeting = console_reply(user=self.user, room_id=room.pk, text="Welcome!").event
        asked = say(room.pk, "question").event
        t0 = timezone.now() - timedelta(minutes=30)
        RoomEvent.objects.filter(pk=greeting.pk).update(created_at=t0)
        RoomEvent.objects.filter(pk=asked.pk).update(created_at=t0 + timedelta(seconds=10))
        self.assertEqual(first_response_seconds(), [])

    def test_messages_older_than_a_day_are_not_charted(self) -> None:
        room = chat_room("old", sms=None)
        event = say(room.pk, "yesterday").event
        RoomEvent.objects.filter(pk=event.pk).update(created_at=timezone.now() - timedelta(hours=25))
        self.assertEqual(dashboard_stats().messages_24h, [])

    def test_viewers_see_the_dashboard_staff_outside_the_groups_do_not(self) -> None:
        self.assertIn("Operator dashboard", logged_in(viewer()).get("/admin/").content.decode())
        self.assertNotIn("Operator dashboard", logged_in(make_user("stranger")).get("/admin/").content.decode())
