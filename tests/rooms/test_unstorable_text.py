"""Text no database of ours can store is refused at every entrance, and a stored one breaks nothing.

An unpaired UTF-16 surrogate (``"\\ud800"`` escaped in JSON) or a NUL decodes
to a Python ``str`` but PostgreSQL refuses it, and SQLite keeps it inside JSON
from where it breaks every UTF-8 encoding of the row. Every entrance — the
chat socket, the API, webhooks, operators, agents — refuses it with a 4xx or
an error frame, and a row that already holds one (written before the rule, on
SQLite) still renders and replays.
"""

from __future__ import annotations

import json
import unittest

from channels.db import database_sync_to_async
from django.db import connection
from django.test import TestCase, TransactionTestCase

from rooms.console.actions import console_reply
from rooms.content.storable import find_unstorable, scrub_unstorable, storable_text
from rooms.enums import ChannelType
from rooms.errors import InvalidInput
from rooms.models import Room, RoomEvent
from tests.console.helpers import chat_room, logged_in, operator, say, sms_and_web_channels
from tests.rooms.fixtures import row_counts, send
from tests.sockets.helpers import Sockets, is_event, is_type, next_frame
from tests.support import make_channel, post_signed

SURROGATE = "\ud800"


class StorableTextTests(TestCase):
    def test_the_rule(self) -> None:
        self.assertTrue(storable_text("plain"))
        self.assertTrue(storable_text("émoji 😀 ok"))
        self.assertFalse(storable_text(f"a{SURROGATE}b"))
        self.assertFalse(storable_text("a\x00b"))
        self.assertEqual(find_unstorable({"k": ["fine", {"deep": f"x{SURROGATE}"}]}), f"x{SURROGATE}")
        self.assertEqual(scrub_unstorable({"a": [f"x{SURROGATE}y", "z\x00"]}), {"a": ["x\ufffdy", "z"]})


class EveryEntranceRefusesTests(TestCase):
    def setUp(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS)
        make_channel("hook-in", secrets={"signing_secret": "s3cret"})

    def test_the_inbound_path_refuses_it_in_any_text_it_stores(self) -> None:
        before = row_counts()
        cases = {
            "text body": {"text": f"hi {SURROGATE}"},
            "rich body": {"content": {"type": "rich", "body": f"<b>{SURROGATE}</b>"}},
            "media caption": {
                "content": {"type": "media", "url": "https://x/a.png", "mime_type": "image/png", "caption": SURROGATE}
            },
            "content metadata": {"content": {"type": "text", "body": "hi", "metadata": {"k": SURROGATE}}},
            "event metadata": {"metadata": {"k": SURROGATE}},
            "sender": {"sender": f"+1555{SURROGATE}"},
            "display name": {"display_name": f"Ann{SURROGATE}"},
            "idempotency key": {"idempotency_key": f"k{SURROGATE}"},
        }
        for label, fields in cases.items():
            with self.subTest(label):
                fields = {"sender": "+15550001", **fields}
                with self.assertRaises(InvalidInput) as caught:
                    send("sms-in", **fields)
                self.assertEqual(caught.exception.status, 400)
        self.assertEqual(row_counts(), before)

    def test_the_api_answers_400(self) -> None:
        from rooms.api.tokens import api_token_create

        _, token = api_token_create(username="integrator")
        room_id = send("sms-in", "+15550001", "hello").room_id
        body = '{"text": "hi \\ud800 there"}'
        response = self.client.post(
            f"/api/v1/rooms/{room_id}/messages", data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
        )
        self.assertEqual(response.status_code, 400, response.content)
        self.assertEqual(RoomEvent.objects.filter(room_id=room_id).count(), 1)

    def test_a_webhook_answers_400(self) -> None:
        body = b'{"id": "m1", "sender": "alice", "text": "hi \\ud800"}'
        response = post_signed(self.client, "/webhooks/hook-in/", body, "s3cret")
        self.assertEqual(response.status_code, 400, response.content)
        self.assertFalse(RoomEvent.objects.exists())

    def test_an_operator_reply_is_refused(self) -> None:
        sms_and_web_channels()
        room = chat_room()
        with self.assertRaises(InvalidInput):
            console_reply(user=operator(), room_id=room.id, text=f"we {SURROGATE} help")


class ChatSocketRefusesTests(TransactionTestCase):
    def setUp(self) -> None:
        self.sockets = Sockets()

    async def test_the_sender_gets_an_error_frame_and_the_socket_stays_open(self) -> None:
        response = await self.async_client.post(
            "/api/v1/chat/sessions", data={"display_name": "Ann"}, content_type="application/json"
        )
        session = response.json()
        try:
            comm, _ = await self.sockets.connect(session["token"])
            # The escape as a browser's JSON.stringify would send it.
            await comm.send_to(text_data='{"type": "message", "text": "hi \\ud800", "client_msg_id": "m1"}')
            error, _ = await next_frame(comm, is_type("error"))
            self.assertEqual(error["client_msg_id"], "m1")
            self.assertIn(error["code"], {"invalid_content", "invalid_text"})
            # Still open: a good message goes through.
            await comm.send_json_to({"type": "message", "text": "fine", "client_msg_id": "m2"})
            ack, _ = await next_frame(comm, is_type("ack"))
            self.assertEqual(ack["client_msg_id"], "m2")
            self.assertEqual(
                await database_sync_to_async(lambda: list(RoomEvent.objects.values_list("content__body", flat=True)))(), ["fine"]
            )
        finally:
            await self.sockets.close_all()


def _poison(event_id: str) -> None:
    """Write what an old row may hold: a lone surrogate escaped in the JSON text (SQLite only)."""
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE rooms_roomevent SET content = %s WHERE id = %s",
            [json.dumps({"type": "text", "body": f"bad {SURROGATE} row"}), event_id],
        )


@unittest.skipUnless(connection.vendor == "sqlite", "PostgreSQL cannot hold such a row: jsonb refuses it")
class PoisonedRowTests(TransactionTestCase):
    def setUp(self) -> None:
        self.sockets = Sockets()
        sms_and_web_channels()
        self.room = chat_room()
        self.event_id = say(self.room.id, "will be poisoned").event_id
        say(self.room.id, "after it")
        _poison(self.event_id)

    def test_the_row_loads_with_the_character_replaced(self) -> None:
        self.assertEqual(RoomEvent.objects.get(pk=self.event_id).content["body"], "bad \ufffd row")

    def test_the_console_page_and_the_api_still_answer(self) -> None:
        page = logged_in(operator()).get(f"/admin/rooms/room/{self.room.id}/console/")
        self.assertEqual(page.status_code, 200)
        self.assertContains(page, "bad \ufffd row")
        from rooms.api.tokens import api_token_create

        _, token = api_token_create(username="integrator")
        response = self.client.get(f"/api/v1/rooms/{self.room.id}/events", HTTP_AUTHORIZATION=f"Bearer {token}")
        self.assertEqual(response.status_code, 200)
        self.assertIn("bad \ufffd row", [e["content"].get("body") for e in response.json()["events"]])

    async def test_a_resume_from_before_it_replays_everything(self) -> None:
        from channels_app.webchat.sessions import chat_session_join

        session = await database_sync_to_async(chat_session_join)(self.room.id, display_name="Bea")
        try:
            comm, _ = await self.sockets.connect(session.token)
            await comm.send_json_to({"type": "resume", "after_seq": 0})
            bodies = []
            while "after it" not in bodies:
                frame, _ = await next_frame(comm, is_event())
                bodies.append(frame["event"]["content"].get("body"))
            self.assertIn("bad \ufffd row", bodies)
            room = await database_sync_to_async(Room.objects.get)(pk=self.room.id)
            self.assertEqual(room.status, "active")
        finally:
            await self.sockets.close_all()
