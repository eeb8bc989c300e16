"""Chat socket rate limits: per socket, per participant (across sockets and server processes), per frame.

Every message may start a paid AI reply: the scripted demo agent answers each
stored message here, so the number of replies is what a burst costs.
"""

from __future__ import annotations

import io
import json
import time
import unittest

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.management import call_command
from django.test import TransactionTestCase, override_settings

from agents.models import Generation
from channels_app.webchat.sessions import chat_session_start
from rooms.models import RoomEvent
from tests.concurrency.processes import ORIGIN, start_daphnes
from tests.sockets.helpers import is_type, next_frame
from tests.sockets.test_chat_consumer import ChatSocketTestBase

try:
    from websockets.sync.client import connect as ws_connect
except ImportError:  # pragma: no cover - listed in requirements-dev.txt
    ws_connect = None


async def send_messages(comm, count: int, prefix: str) -> tuple[list[dict], list[dict]]:
    """Send ``count`` messages at once; the acks and the errors that answer them."""
    for i in range(count):
        await comm.send_json_to({"type": "message", "text": f"{prefix} {i}", "client_msg_id": f"{prefix}-{i}"})
    acks: list[dict] = []
    errors: list[dict] = []
    while len(acks) + len(errors) < count:
        frame, _ = await next_frame(comm, lambda f: f.get("type") in ("ack", "error"), timeout=15)
        (acks if frame["type"] == "ack" else errors).append(frame)
    return acks, errors


def stored_messages(room_id: str) -> int:
    return RoomEvent.objects.filter(room_id=room_id, source_channel_id=settings.ROOMKIT_WEBCHAT_CHANNEL_ID).count()


def ai_replies(room_id: str) -> int:
    return RoomEvent.objects.filter(room_id=room_id, source_channel__channel_type="ai").count()


@override_settings(ROOMKIT_CHAT_FRAME_RATE="100/second")
class MessageRateTest(ChatSocketTestBase):
    def setUp(self) -> None:
        super().setUp()
        call_command("seed_demo", stdout=io.StringIO())  # an AI agent answers every message

    @override_settings(ROOMKIT_CHAT_MESSAGE_RATE="5/minute", ROOMKIT_CHAT_PARTICIPANT_MESSAGE_RATE="100/minute")
    async def test_a_burst_from_one_socket_is_cut_at_its_limit_with_error_frames(self):
        session = await sync_to_async(chat_session_start)(display_name="Ann", open_now=True)
        try:
            ann, _ = await self.sockets.connect(session.token)
            acks, errors = await send_messages(ann, 8, "burst")
            self.assertEqual([a["client_msg_id"] for a in acks], [f"burst-{i}" for i in range(5)])
            self.assertEqual([e["client_msg_id"] for e in errors], [f"burst-{i}" for i in range(5, 8)])
            for e in errors:
                self.assertEqual(e["code"], "rate_limited")
                self.assertGreater(e["retry_after"], 0)
                self.assertLessEqual(e["retry_after"], 60)
            self.assertEqual(await database_sync_to_async(stored_messages)(session.room_id), 5)
            # What the burst cost: five replies, not eight.
            await self._replies_settled(session.room_id)
            self.assertEqual(await database_sync_to_async(ai_replies)(session.room_id), 5)
            # The socket is still open and other frames still work.
            await ann.send_json_to({"type": "resume", "after_seq": 0})
            await next_frame(ann, is_type("resumed"), timeout=10)
        finally:
            await self.sockets.close_all()

    @override_settings(ROOMKIT_CHAT_MESSAGE_RATE="5/minute", ROOMKIT_CHAT_PARTICIPANT_MESSAGE_RATE="7/minute")
    async def test_a_participants_sockets_share_one_limit(self):
        session = await sync_to_async(chat_session_start)(display_name="Ann", open_now=True)
        try:
            tab1, _ = await self.sockets.connect(session.token)
            tab2, _ = await self.sockets.connect(session.token)
            acks1, errors1 = await send_messages(tab1, 5, "tab1")
            self.assertEqual((len(acks1), errors1), (5, []))
            acks2, errors2 = await send_messages(tab2, 5, "tab2")
            self.assertEqual(len(acks2), 2)
            self.assertEqual(
                [(e["code"], e["client_msg_id"]) for e in errors2], [("rate_limited", f"tab2-{i}") for i in (2, 3, 4)]
            )
            self.assertEqual(await database_sync_to_async(stored_messages)(session.room_id), 7)
        finally:
            await self.sockets.close_all()

    async def _replies_settled(self, room_id: str) -> None:
        deadline = time.monotonic() + 20
        while await database_sync_to_async(
            Generation.objects.filter(room_id=room_id, status__in=("pending", "running")).exists
        )():
            self.assertLess(time.monotonic(), deadline)
            await sync_to_async(time.sleep)(0.05)


@override_settings(ROOMKIT_CHAT_FRAME_RATE="10/second")
class FrameRateTest(ChatSocketTestBase):
    async def test_a_flood_of_frames_gets_error_frames_and_the_socket_recovers(self):
        session = await sync_to_async(chat_session_start)(display_name="Ann", open_now=True)
        try:
            ann, _ = await self.sockets.connect(session.token)
            started = time.monotonic()
            for _ in range(25):
                await ann.send_json_to({"type": "typing", "state": "start"})
            errors = []
            while not await ann.receive_nothing(0.3):
                frame = await ann.receive_json_from()
                if frame.get("type") == "error":
                    errors.append(frame)
            if time.monotonic() - started < 1.0:  # all 25 within the one-second window
                self.assertEqual(len(errors), 15)
            self.assertTrue(errors)
            self.assertEqual({e["code"] for e in errors}, {"rate_limited"})
            # A second later the window has moved on: the socket works.
            await sync_to_async(time.sleep)(1.1)
            await ann.send_json_to({"type": "message", "text": "after the flood", "client_msg_id": "after"})
            ack, _ = await next_frame(ann, is_type("ack"))
            self.assertEqual(ack["client_msg_id"], "after")
        finally:
            await self.sockets.close_all()


@unittest.skipIf(ws_connect is None, "the 'websockets' client library is not installed (requirements-dev.txt)")
class LimitsFromEnvironmentTest(TransactionTestCase):
    """The limits come from the environment variables README documents, read by a real server process."""

    def _send(self, ws, client_msg_id: str) -> dict:
        ws.send(json.dumps({"type": "message", "text": client_msg_id, "client_msg_id": client_msg_id}))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            frame = json.loads(ws.recv(timeout=15))
            if frame.get("type") in ("ack", "error") and frame.get("client_msg_id") == client_msg_id:
                return frame
        raise AssertionError(f"no answer to {client_msg_id}")

    def test_socket_limit_set_by_environment(self):
        [(_, port)] = start_daphnes(self, 1, ROOMKIT_CHAT_MESSAGE_RATE="2/minute")
        session = chat_session_start(display_name="Ann", open_now=True)
        ws = ws_connect(f"ws://127.0.0.1:{port}/ws/chat/?token={session.token}", origin=ORIGIN, open_timeout=10)
        self.addCleanup(ws.close)
        answers = [self._send(ws, f"m{i}") for i in range(3)]
        self.assertEqual([a["type"] for a in answers], ["ack", "ack", "error"])
        self.assertEqual(answers[2]["code"], "rate_limited")

    @unittest.skipUnless(settings.REDIS_URL, "the participant limit is shared between processes through Redis: set REDIS_URL")
    def test_participant_limit_holds_across_server_processes(self):
        (_, port_a), (_, port_b) = start_daphnes(
            self, 2, ROOMKIT_CHAT_MESSAGE_RATE="", ROOMKIT_CHAT_PARTICIPANT_MESSAGE_RATE="3/minute"
        )
        session = chat_session_start(display_name="Ann", open_now=True)
        on_a = ws_connect(f"ws://127.0.0.1:{port_a}/ws/chat/?token={session.token}", origin=ORIGIN, open_timeout=10)
        self.addCleanup(on_a.close)
        on_b = ws_connect(f"ws://127.0.0.1:{port_b}/ws/chat/?token={session.token}", origin=ORIGIN, open_timeout=10)
        self.addCleanup(on_b.close)
        answers = [self._send(on_a, "a1"), self._send(on_a, "a2"), self._send(on_b, "b1"), self._send(on_b, "b2")]
        self.assertEqual([a["type"] for a in answers], ["ack", "ack", "ack", "error"])
        self.assertEqual(answers[3]["code"], "rate_limited")
        self.assertEqual(RoomEvent.objects.filter(room_id=session.room_id).count(), 3)
