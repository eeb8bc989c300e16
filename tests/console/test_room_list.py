"""The room list: its columns, unread counts, filters, search, and a query count that does not grow with rooms."""

from __future__ import annotations

from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext

from rooms.console.actions import console_mark_read
from rooms.enums import RoomStatus
from rooms.models import Room
from rooms.services import room_close
from tests.console.helpers import chat_room, csrf_post, logged_in, operator, say, sms_and_web_channels, viewer

LIST = "/admin/rooms/room/"


class RoomListTests(TestCase):
    def setUp(self) -> None:
        sms_and_web_channels()
        self.user = operator()
        self.client = logged_in(self.user)

    def test_columns_show_status_channels_participants_agent_activity_and_unread(self) -> None:
        room = chat_room("Billing question")
        Room.objects.filter(pk=room.pk).update(conversation_state={"active_agent_id": "triage"})
        say(room.pk, "hello there")
        say(room.pk, "anyone?")
        room.refresh_from_db()
        console_mark_read(user=self.user, room_id=room.pk, seq=room.last_seq - 2)
        response = self.client.get(LIST)
        self.assertEqual(response.status_code, 200)
        html = response.content.decode()
        self.assertIn("Billing question", html)
        self.assertIn(f"/admin/rooms/room/{room.pk}/console/", html)
        self.assertIn("sms, websocket", html)
        self.assertIn("Alice", html)
        self.assertIn("SMS +15550001111", html)
        self.assertIn("triage", html)
        self.assertIn('data-unread="2"', html)

    def test_unread_counts_every_event_after_the_operators_marker(self) -> None:
        room = chat_room("Unread")
        start = Room.objects.get(pk=room.pk).last_seq
        html = self.client.get(LIST).content.decode()
        self.assertIn(f'data-unread="{start}"', html)
        self.client.get(f"/admin/rooms/room/{room.pk}/console/")
        self.assertIn(f'data-unread="{start}"', self.client.get(LIST).content.decode())  # opening the page is a read
        csrf_post(self.client, f"/admin/rooms/room/{room.pk}/console/read/", {"seq": start})  # what the page then posts
        self.assertIn('data-unread="0"', self.client.get(LIST).content.decode())
        say(room.pk, "one more")
        self.assertIn('data-unread="1"', self.client.get(LIST).content.decode())

    def test_filters_status_channel_type_agent_and_date(self) -> None:
        open_room = chat_room("Open one")
        closed = chat_room("Closed one", sms=None)
        room_close(room_id=closed.pk)
        Room.objects.filter(pk=open_room.pk).update(conversation_state={"active_agent_id": "billing"})
        Room.objects.filter(pk=closed.pk).update(conversation_state={"human": {"status": "active", "operator": "olga"}})

        def names(query: str) -> set[str]:
            html = self.client.get(LIST + query).content.decode()
            return {n for n in ("Open one", "Closed one") if n in html}

        self.assertEqual(names("?status__exact=closed"), {"Closed one"})
        self.assertEqual(names(f"?status__exact={RoomStatus.ACTIVE}"), {"Open one"})
        self.assertEqual(names("?channel_type=sms"), {"Open one"})
        self.assertEqual(names("?channel_type=websocket"), {"Open one", "Closed one"})
        self.assertEqual(names("?agent=billing"), {"Open one"})
        self.assertEqual(names("?agent=__human__"), {"Closed one"})
        self.assertEqual(
            names("?last_activity_at__gte=2000-01-01+00:00:00%2B00:00&last_activity_at__lt=2001-01-01+00:00:00%2B00:00"), set()
        )
        self.assertEqual(len(names("?last_activity_at__gte=2000-01-01+00:00:00%2B00:00")), 2)

    def test_search_by_participant_name_address_and_message_text(self) -> None:
        chat_room("First", sender="bob", sms="+15550002222")
        second = chat_room("Second", sender="carol", sms=None)
        say(second.pk, "my parcel never arrived", sender="carol")

        def found(q: str) -> set[str]:
            html = self.client.get(LIST, {"q": q}).content.decode()
            return {n for n in ("First", "Second") if f">{n}<" in html}

        self.assertEqual(found("Bob"), {"First"})
        self.assertEqual(found("+15550002222"), {"First"})
        self.assertEqual(found("parcel"), {"Second"})
        self.assertEqual(found("nothing-like-this"), set())

    def test_query_count_does_not_grow_with_the_number_of_rooms(self) -> None:
        for i in range(3):
            chat_room(f"Room {i}")
        self.client.get(LIST)  # warm the session and content types
        with CaptureQueriesContext(connection) as few:
            self.assertEqual(self.client.get(LIST).status_code, 200)
        for i in range(3, 12):
            room = chat_room(f"Room {i}")
            say(room.pk, f"message {i}")
        with self.assertNumQueries(len(few.captured_queries)):
            response = self.client.get(LIST)
        self.assertEqual(response.status_code, 200)
        self.assertIn("Room 11", response.content.decode())

    def test_viewer_reads_the_list(self) -> None:
        chat_room("Visible")
        response = logged_in(viewer()).get(LIST)
        self.assertEqual(response.status_code, 200)
        self.assertIn("Visible", response.content.decode())
