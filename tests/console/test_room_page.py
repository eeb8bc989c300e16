"""The room page: the timeline in seq order, rendered safely, and everything around it, without N+1."""

from __future__ import annotations

import re

from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext

from rooms.console.actions import console_note
from rooms.hooks import HookResult, HookTrigger
from rooms.models import Delivery, Observation, Room, RoomReadMarker, Task
from tests.console.helpers import chat_room, csrf_post, logged_in, operator, say, sms_and_web_channels, viewer
from tests.rooms.fixtures import use_hook


def page(room_id: str) -> str:
    return f"/admin/rooms/room/{room_id}/console/"


class RoomPageTests(TestCase):
    def setUp(self) -> None:
        sms_and_web_channels()
        self.user = operator()
        self.client = logged_in(self.user)
        self.room = chat_room("Support")

    def html(self) -> str:
        response = self.client.get(page(self.room.pk))
        self.assertEqual(response.status_code, 200)
        return response.content.decode()

    def test_timeline_is_in_seq_order_with_source_channel_and_participant(self) -> None:
        say(self.room.pk, "first words")
        say(self.room.pk, "second words")
        html = self.html()
        self.assertLess(html.index("first words"), html.index("second words"))
        seqs = [int(s) for s in re.findall(r'data-seq="(\d+)"', html)]
        self.assertEqual(seqs, sorted(seqs))
        self.assertEqual(seqs[-1], Room.objects.get(pk=self.room.pk).last_seq)
        self.assertIn('<strong class="rk-who">Alice</strong>', html)
        self.assertIn('<span class="rk-source" title="websocket">web</span>', html)

    def test_text_is_escaped(self) -> None:
        say(self.room.pk, '<script>alert("x")</script><img src=x onerror=alert(1)>')
        html = self.html()
        self.assertNotIn('<script>alert("x")</script>', html)
        self.assertNotIn("<img src=x onerror", html)
        self.assertIn("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;", html)

    def test_rich_html_is_sanitized(self) -> None:
        body = '<p>Hello <b>there</b></p><script>steal()</script><a href="javascript:evil()" onclick="evil()">link</a>'
        say(self.room.pk, None, content={"type": "rich", "format": "html", "body": body})
        html = self.html()
        self.assertIn("<p>Hello <b>there</b></p>", html)
        self.assertNotIn("steal()", html)
        self.assertNotIn("javascript:", html)
        self.assertNotIn("onclick", html)

    def test_images_are_previewed_and_audio_gets_a_player(self) -> None:
        say(
            self.room.pk,
            None,
            content={"type": "media", "url": "/media/chat/a.png", "mime_type": "image/png", "caption": "receipt"},
        )
        say(self.room.pk, None, content={"type": "audio", "url": "https://cdn.example.com/v.ogg", "transcript": "call me back"})
        say(self.room.pk, None, content={"type": "media", "url": "javascript:alert(1)", "mime_type": "image/png"})
        html = self.html()
        self.assertIn('<img class="rk-image" src="/media/chat/a.png" alt="receipt"', html)
        self.assertIn('<audio class="rk-audio" controls preload="none" src="https://cdn.example.com/v.ogg">', html)
        self.assertIn("call me back", html)
        self.assertNotIn('src="javascript:', html)
        self.assertIn("link not shown", html)

    def test_blocked_events_show_their_reason_and_notes_are_marked_internal(self) -> None:
        use_hook(self, HookTrigger.BEFORE_BROADCAST, lambda e, c: HookResult.block("no swearing"), name="profanity")
        say(self.room.pk, "a rude word")
        console_note(user=self.user, room_id=self.room.pk, text="customer seems upset")
        html = self.html()
        self.assertIn("blocked: profanity: no swearing", html)
        self.assertIn("customer seems upset", html)
        self.assertIn("operators only", html)

    def test_bindings_participants_state_tasks_observations_and_deliveries(self) -> None:
        Room.objects.filter(pk=self.room.pk).update(
            conversation_state={
                "phase": "billing",
                "active_agent_id": "specialist",
                "previous_agent_id": "triage",
                "handoff_count": 1,
                "phase_history": [
                    {"from_phase": "triage", "to_phase": "billing", "reason": "refund", "at": "2026-01-01T00:00:00Z"}
                ],
            }
        )
        Task.objects.create(room_id=self.room.pk, title="Refund order 42")
        Observation.objects.create(room_id=self.room.pk, kind="sentiment", summary="negative")
        say(self.room.pk, "hello sms")
        delivery = Delivery.objects.get(event__room_id=self.room.pk, channel_id="sms")
        Delivery.objects.filter(pk=delivery.pk).update(status="dead", last_error="gave up after 5 tries")
        html = self.html()
        for text in (
            "+15550001111", "read_write", "SMS +15550001111", "billing", "specialist", "triage",
            "Refund order 42", "sentiment", "negative", "dead", "gave up after 5 tries", "refund",
        ):  # fmt: skip
            self.assertIn(text, html)
        self.assertIn(f'name="delivery" value="{delivery.pk}"', html)

    def test_opening_the_page_writes_nothing_its_post_marks_the_room_read(self) -> None:
        say(self.room.pk, "unread message")
        last = Room.objects.get(pk=self.room.pk).last_seq
        html = self.html()
        self.client.get(page(self.room.pk) + "timeline/", {"after_seq": 0})
        self.assertFalse(RoomReadMarker.objects.filter(room_id=self.room.pk).exists())  # a GET never writes
        self.assertIn(f'action="{page(self.room.pk)}read/"', html)
        self.assertIn(f'name="seq" value="{last}"', html)

        # What the page's script (or its button) sends; never past the last event.
        response = csrf_post(self.client, page(self.room.pk) + "read/", {"seq": last + 50}, HTTP_ACCEPT="application/json")
        self.assertEqual(response.json(), {"read_seq": last})
        marker = RoomReadMarker.objects.get(room_id=self.room.pk)
        self.assertEqual((marker.seq, marker.read_by), (last, self.user))
        # Never back, and the button without script returns to the page.
        response = csrf_post(self.client, page(self.room.pk) + "read/", {"seq": 1})
        self.assertRedirects(response, page(self.room.pk), fetch_redirect_response=False)
        self.assertEqual(RoomReadMarker.objects.get(room_id=self.room.pk).seq, last)
        self.assertEqual(self.client.get(page(self.room.pk) + "read/").status_code, 405)

    def test_viewers_cannot_move_the_operators_read_marker(self) -> None:
        say(self.room.pk, "unread message")
        watcher = logged_in(viewer())
        self.assertNotIn("rk-read-form", watcher.get(page(self.room.pk)).content.decode())
        response = csrf_post(watcher, page(self.room.pk) + "read/", {"seq": 1})
        self.assertEqual(response.status_code, 403)
        self.assertFalse(RoomReadMarker.objects.filter(room_id=self.room.pk).exists())

    def test_timeline_rows_after_a_seq_for_the_live_page(self) -> None:
        last = Room.objects.get(pk=self.room.pk).last_seq
        say(self.room.pk, "<b>late</b> message")
        response = self.client.get(page(self.room.pk) + "timeline/", {"after_seq": last})
        html = response.content.decode()
        self.assertEqual(html.count("data-seq="), 1)
        self.assertIn("&lt;b&gt;late&lt;/b&gt; message", html)

    def test_query_count_does_not_grow_with_events_bindings_and_deliveries(self) -> None:
        say(self.room.pk, "warm up")
        self.html()
        say(self.room.pk, "one more")
        with CaptureQueriesContext(connection) as small:
            self.html()
        for i in range(15):
            say(self.room.pk, f"message {i}")
        from rooms.services import channel_attach

        for i in range(3):
            channel_attach(room_id=self.room.pk, channel_id="sms", address=f"+1555000900{i}", display_name=f"Extra {i}")
        Task.objects.create(room_id=self.room.pk, title="t1")
        Task.objects.create(room_id=self.room.pk, title="t2")
        Observation.objects.create(room_id=self.room.pk, kind="k", summary="s")
        say(self.room.pk, "the last one")
        with self.assertNumQueries(len(small.captured_queries)):
            html = self.html()
        self.assertIn("message 14", html)

    def test_viewer_reads_the_page_without_any_action_form(self) -> None:
        say(self.room.pk, "hello")
        html = logged_in(viewer()).get(page(self.room.pk)).content.decode()
        self.assertIn("hello", html)
        self.assertNotIn("rk-reply-form", html)
        self.assertNotIn("/console/action/", html)
        self.assertNotIn("rk-note-form", html)

    def test_unknown_room_is_404(self) -> None:
        self.assertEqual(self.client.get(page("nope")).status_code, 404)
