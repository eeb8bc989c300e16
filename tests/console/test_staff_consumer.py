"""The operators' live socket: session auth, staff only, room events (notes included) relayed."""

from __future__ import annotations

import asyncio
import json

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import TransactionTestCase
from django.urls import path

from channels_app.staff_consumer import CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, staff_rooms_app
from rooms.console.actions import console_note
from rooms.realtime import broadcast as realtime
from tests.console.helpers import chat_room, logged_in, make_user, operator, say, sms_and_web_channels, viewer

# The routes the lead adds to roomkit_project/asgi.py, here without the origin check.
application = URLRouter(
    [
        path("ws/staff/rooms/", staff_rooms_app),
        path("ws/staff/rooms/<str:room_id>/", staff_rooms_app),
    ]
)


class StaffSocketTests(TransactionTestCase):
    def setUp(self) -> None:
        sms_and_web_channels()
        self.room = chat_room("Live")

    def cookie_of(self, user) -> str:
        client = logged_in(user)
        return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"

    def connect(self, path: str, cookie: str | None) -> WebsocketCommunicator:
        headers = [(b"cookie", cookie.encode())] if cookie else []
        return WebsocketCommunicator(application, path, headers=headers)

    def test_an_operator_gets_every_event_of_the_room_including_notes(self) -> None:
        user = operator()
        cookie = self.cookie_of(user)

        async def scenario() -> list[dict]:
            realtime.bind_server_loop(asyncio.get_running_loop())
            ws = self.connect(f"/ws/staff/rooms/{self.room.pk}/", cookie)
            connected, _ = await ws.connect()
            self.assertTrue(connected)
            self.assertEqual(json.loads(await ws.receive_from(5)), {"type": "ready", "room_id": self.room.pk})
            await database_sync_to_async(say)(self.room.pk, "hello from the web")
            await database_sync_to_async(console_note)(user=user, room_id=self.room.pk, text="internal remark")
            frames = [json.loads(await ws.receive_from(5)) for _ in range(2)]
            await ws.disconnect()
            return frames

        frames = async_to_sync(scenario)()
        self.assertEqual([f["type"] for f in frames], ["event", "event"])
        self.assertEqual(frames[0]["event"]["content"]["body"], "hello from the web")
        self.assertEqual(frames[1]["event"]["type"], "note")
        self.assertEqual(frames[1]["event"]["room_id"], self.room.pk)

    def test_the_list_socket_relays_events_of_watched_rooms(self) -> None:
        cookie = self.cookie_of(viewer())
        other = chat_room("Other", sender="bob", sms=None)

        async def scenario() -> dict:
            realtime.bind_server_loop(asyncio.get_running_loop())
            ws = self.connect("/ws/staff/rooms/", cookie)
            self.assertTrue((await ws.connect())[0])
            self.assertEqual(json.loads(await ws.receive_from(5))["type"], "ready")
            await ws.send_json_to({"type": "watch", "room_ids": [self.room.pk, "no-such-room"]})
            await asyncio.sleep(0.2)
            await database_sync_to_async(say)(other.pk, "not watched", sender="bob")
            await database_sync_to_async(say)(self.room.pk, "watched")
            # Every room's activity is announced (the inbox lists them all); events come only from watched rooms.
            frames = await _frames_until_quiet(ws)
            events = [f for f in frames if f["type"] == "event"]
            self.assertEqual(len(events), 1)
            frame = events[0]
            activity = {f["room_id"] for f in frames if f["type"] == "room_activity"}
            self.assertEqual(activity, {other.pk, self.room.pk})
            await ws.disconnect()
            return frame

        frame = async_to_sync(scenario)()
        self.assertEqual((frame["event"]["room_id"], frame["event"]["content"]["body"]), (self.room.pk, "watched"))

    def test_the_list_socket_hears_of_new_rooms(self) -> None:
        cookie = self.cookie_of(viewer())

        async def scenario() -> tuple[dict, str]:
            realtime.bind_server_loop(asyncio.get_running_loop())
            ws = self.connect("/ws/staff/rooms/", cookie)
            self.assertTrue((await ws.connect())[0])
            self.assertEqual(json.loads(await ws.receive_from(5))["type"], "ready")
            # A first message from a new SMS sender opens a room.
            result = await database_sync_to_async(say)(None, "new here", sender="+15550999", channel_id="sms")
            frames = await _frames_until_quiet(ws)
            await ws.disconnect()
            return next(f for f in frames if f["type"] == "room_created"), result.room_id

        frame, room_id = async_to_sync(scenario)()
        self.assertEqual(frame, {"type": "room_created", "room_id": room_id})

    def test_anonymous_non_staff_and_outsiders_are_closed_with_4403(self) -> None:
        cookies = [None, self.cookie_of(make_user("nostaff", staff=False)), self.cookie_of(make_user("stranger"))]

        async def scenario() -> list[int]:
            codes = []
            for cookie in cookies:
                ws = self.connect(f"/ws/staff/rooms/{self.room.pk}/", cookie)
                await ws.connect()
                codes.append((await ws.receive_output(5))["code"])
            return codes

        self.assertEqual(async_to_sync(scenario)(), [CLOSE_FORBIDDEN] * 3)

    def test_an_unknown_room_is_closed_with_4404(self) -> None:
        cookie = self.cookie_of(operator())

        async def scenario() -> int:
            ws = self.connect("/ws/staff/rooms/nope/", cookie)
            await ws.connect()
            return (await ws.receive_output(5))["code"]

        self.assertEqual(async_to_sync(scenario)(), CLOSE_NOT_FOUND)


async def _frames_until_quiet(ws, quiet: float = 0.3) -> list[dict]:
    """Every frame the socket gets until it stays quiet for ``quiet`` seconds (the first within 5 s)."""
    frames = [json.loads(await ws.receive_from(5))]
    while not await ws.receive_nothing(quiet):
        frames.append(json.loads(await ws.receive_from(1)))
    return frames
