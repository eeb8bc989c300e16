"""No client frame and no stored text closes a socket: the client gets an error frame, the socket lives on.

- A frame nested too deeply to parse: an ``error`` frame (``bad_frame``).
- A lone UTF-16 surrogate, escaped in a client's JSON (``"\\ud800"``): some
  answer (refused with an error frame, or stored and acknowledged), never a
  close, on either database.
- Text with a lone surrogate has no UTF-8 form, so a frame holding it could
  not be sent; frames are written with JSON's ``\\u`` escapes instead, and the
  client reads back the same string. Shown for a stored row replayed by a
  resume (SQLite can hold one; PostgreSQL refuses it on the way in) and for a
  live event on a chat socket and an operator's socket, through either layer.
"""

from __future__ import annotations

import asyncio
import json

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.urls import path

from channels_app.staff_consumer import staff_rooms_app
from channels_app.webchat.sessions import chat_session_start
from rooms.models import Room, RoomEvent
from rooms.realtime import broadcast as realtime
from rooms.serializers import event_to_dict
from tests.console.helpers import logged_in, operator
from tests.sockets.helpers import is_event, is_type, next_frame
from tests.sockets.test_chat_consumer import ChatSocketTestBase

LONE = "broken \ud800 text"
staff_application = URLRouter([path("ws/staff/rooms/<str:room_id>/", staff_rooms_app)])


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


class BadFrameTest(ChatSocketTestBase):
    async def assert_still_works(self, comm, client_msg_id: str) -> None:
        await comm.send_json_to({"type": "message", "text": "still here", "client_msg_id": client_msg_id})
        ack, _ = await next_frame(comm, lambda f: f.get("type") == "ack" and f.get("client_msg_id") == client_msg_id)
        self.assertEqual(ack["status"], "stored")

    async def test_a_deeply_nested_frame_gets_an_error_frame(self):
        session = await sync_to_async(chat_session_start)(display_name="Ann", open_now=True)
        try:
            ann, _ = await self.sockets.connect(session.token)
            for text in (
                nested(200_000),
                '{"type": "message", "client_msg_id": "n1", "text": ' + nested(100_000) + "}",
                '{"type": "message", "client_msg_id": "n2", "media": ' + '{"url": ' * 50_000 + "1" + "}" * 50_000 + "}",
            ):
                await ann.send_to(text_data=text)
                error, _ = await next_frame(ann, is_type("error"))
                self.assertEqual(error["code"], "bad_frame")
            # Nested, but parseable: refused by the rules, not by a crash.
            await ann.send_json_to({"type": "message", "client_msg_id": "n3", "text": json.loads(nested(500))})
            error, _ = await next_frame(ann, is_type("error"))
            self.assertEqual((error["code"], error["client_msg_id"]), ("invalid_input", "n3"))
            await self.assert_still_works(ann, "after-nesting")
        finally:
            await self.sockets.close_all()

    async def test_a_lone_surrogate_in_a_frame_never_closes_the_socket(self):
        session = await sync_to_async(chat_session_start)(display_name="Ann", open_now=True)
        try:
            ann, _ = await self.sockets.connect(session.token)
            await ann.send_json_to({"type": "resume", "after_seq": 0})
            await next_frame(ann, is_type("resumed"))
            # Escaped in the JSON text, as a browser's JSON.stringify writes it.
            frame = '{"type": "message", "client_msg_id": "s1", "text": "broken \\ud800 text"}'
            await ann.send_to(text_data=frame)
            answer, _ = await next_frame(ann, lambda f: f.get("client_msg_id") == "s1")
            if answer["type"] == "ack":  # stored (a database that holds it): its event frame says the same
                event, _ = await next_frame(ann, is_event(answer["seq"]))
                self.assertEqual(event["event"]["content"]["body"], LONE)
            else:
                self.assertEqual(answer["type"], "error")
            for text in (
                '{"type": "\\udc00"}',
                '{"type": "typing", "state": "\\ud800"}',
                '{"type": "message", "client_msg_id": "\\ud800", "text": "x"}',
                '{"type": "read", "seq": "\\ud800"}',
            ):
                await ann.send_to(text_data=text)
                error, _ = await next_frame(ann, is_type("error"))
                self.assertTrue(error["code"], text)
            await self.assert_still_works(ann, "after-surrogates")
        finally:
            await self.sockets.close_all()

    async def test_a_stored_row_with_a_lone_surrogate_is_replayed_and_published_live(self):
        session = await sync_to_async(chat_session_start)(display_name="Ann", open_now=True)
        room_id = session.room_id
        try:
            ann, _ = await self.sockets.connect(session.token)
            await ann.send_json_to({"type": "message", "text": "first", "client_msg_id": "c1"})
            await next_frame(ann, is_type("ack"))
            stored = connection.vendor == "sqlite"  # PostgreSQL cannot hold it at all
            if stored:
                await database_sync_to_async(_store_broken_row)(room_id)
                # A resume replays it: one frame, escaped, read back as the same text.
                again, _ = await self.sockets.connect(session.token)
                await again.send_json_to({"type": "resume", "after_seq": 0})
                _, skipped = await next_frame(again, is_type("resumed"))
                replayed = [f["event"] for f in skipped if f.get("type") == "event"]
                self.assertEqual([e["seq"] for e in replayed], [1, 2])
                self.assertIn(replayed[1]["content"]["body"], (LONE, "broken \ufffd text"))
                await self.assert_still_works(again, "after-replay")
            # Live, as the inbound path publishes an event after its commit.
            seq = await database_sync_to_async(lambda: Room.objects.get(pk=room_id).last_seq + 1)()
            live = {
                **(await database_sync_to_async(_event_dict)(room_id, 1)),
                "seq": seq,
                "content": {"type": "text", "body": LONE},
            }
            realtime.publish_event(room_id, live, public=True)
            frame, _ = await next_frame(ann, is_event(seq))
            self.assertEqual(frame["event"]["content"]["body"], LONE)
            await self.assert_still_works(ann, "after-live")
        finally:
            await self.sockets.close_all()

    async def test_an_operators_socket_gets_the_event_and_stays_open(self):
        session = await sync_to_async(chat_session_start)(display_name="Ann", open_now=True)
        room_id = session.room_id
        cookie = await database_sync_to_async(_operator_cookie)()
        try:
            ann, _ = await self.sockets.connect(session.token)
            await ann.send_json_to({"type": "message", "text": "first", "client_msg_id": "c1"})
            await next_frame(ann, is_type("ack"))
            realtime.bind_server_loop(asyncio.get_running_loop())
            staff = WebsocketCommunicator(
                staff_application, f"/ws/staff/rooms/{room_id}/", headers=[(b"cookie", cookie.encode())]
            )
            self.assertTrue((await staff.connect())[0])
            self.assertEqual(json.loads(await staff.receive_from(5))["type"], "ready")
            event = await database_sync_to_async(_event_dict)(room_id, 1)
            realtime.publish_event(room_id, {**event, "seq": 2, "content": {"type": "text", "body": LONE}}, public=False)
            frame = json.loads(await staff.receive_from(5))
            self.assertEqual(frame["event"]["content"]["body"], LONE)
            # Malformed and deeply nested frames: error frames, and the socket still relays.
            await staff.send_to(text_data=nested(200_000))
            self.assertEqual(json.loads(await staff.receive_from(5))["code"], "bad_frame")
            await staff.send_to(text_data='{"type": "watch", "room_ids": ["\\ud800"]}')
            realtime.publish_event(room_id, {**event, "seq": 3}, public=False)
            frame = json.loads(await staff.receive_from(5))
            self.assertEqual(frame["event"]["seq"], 3)
            await staff.disconnect()
        finally:
            await self.sockets.close_all()


def _event_dict(room_id: str, seq: int) -> dict:
    return event_to_dict(RoomEvent.objects.get(room_id=room_id, seq=seq))


def _store_broken_row(room_id: str) -> RoomEvent:
    """A row stored before text was checked for lone surrogates (SQLite keeps them)."""
    with transaction.atomic():
        Room.objects.filter(pk=room_id).update(last_seq=F("last_seq") + 1)
        seq = Room.objects.get(pk=room_id).last_seq
        first = RoomEvent.objects.get(room_id=room_id, seq=1)
        return RoomEvent.objects.create(
            room_id=room_id,
            seq=seq,
            source_channel_id=settings.ROOMKIT_WEBCHAT_CHANNEL_ID,
            source_participant_id=first.source_participant_id,
            content={"type": "text", "body": LONE},
        )


def _operator_cookie() -> str:
    client = logged_in(operator())
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
