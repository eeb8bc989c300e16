"""The web-chat socket ``/ws/chat/?token=…`` against the real ASGI application.

TransactionTestCase: the consumer reaches the database from other threads
(``database_sync_to_async``), which must see committed rows.
"""

from __future__ import annotations

import json
import time
from unittest import mock

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.test import Client, TransactionTestCase

from channels_app.webchat.sessions import chat_session_open, chat_session_start
from channels_app.webchat.tokens import chat_token_issue, chat_token_verify
from rooms.enums import RoomStatus
from rooms.inbound import InboundMessage, process_inbound
from rooms.models import ChannelBinding, Participant, Room, RoomEvent
from tests.sockets.helpers import EVENT_FIELDS, SOURCE_FIELDS, Sockets, drain, is_event, is_type, join_room, next_frame
from tests.support import make_channel, post_signed


class ChatSocketTestBase(TransactionTestCase):
    def setUp(self) -> None:
        self.sockets = Sockets()

    async def start_session(self, display_name: str = "Ann", *, open_room: bool = True) -> dict:
        """``POST /api/v1/chat/sessions``, as the chat page does.

        ``open_room``: create the reserved room now (as the visitor's first
        message would), for tests that bind others to it before anyone writes.
        """
        response = await self.async_client.post(
            "/api/v1/chat/sessions", data={"display_name": display_name}, content_type="application/json"
        )
        self.assertEqual(response.status_code, 201, response.content)
        session = response.json()
        if open_room:
            await database_sync_to_async(chat_session_open)(chat_token_verify(session["token"]))
        return session

    async def count_events(self, **filters) -> int:
        return await database_sync_to_async(RoomEvent.objects.filter(**filters).count)()


class TokenTest(ChatSocketTestBase):
    async def test_bad_and_expired_tokens_close_4401(self):
        session = await sync_to_async(chat_session_start)(display_name="Ann", open_now=True)
        other = await sync_to_async(chat_session_start)(display_name="Bob", open_now=True)
        with mock.patch("django.core.signing.time.time", return_value=time.time() - 8 * 24 * 3600):
            expired = chat_token_issue(room_id=session.room_id, participant_id=session.participant_id)
        forged = session.token[:-3] + ("AAA" if not session.token.endswith("AAA") else "BBB")
        # A genuine token whose participant belongs to another room.
        crossed = chat_token_issue(room_id=session.room_id, participant_id=other.participant_id)
        unknown = chat_token_issue(room_id=session.room_id, participant_id="no-such-participant")
        for label, token in [
            ("empty", ""),
            ("garbage", "not-a-token"),
            ("forged", forged),
            ("expired", expired),
            ("participant of another room", crossed),
            ("unknown participant", unknown),
        ]:
            with self.subTest(label):
                self.assertEqual(await self.sockets.refusal(token), {"type": "websocket.close", "code": 4401})

        # A closed room's token no longer opens a socket either.
        await database_sync_to_async(Room.objects.filter(pk=session.room_id).update)(status=RoomStatus.CLOSED)
        self.assertEqual(await self.sockets.refusal(session.token), {"type": "websocket.close", "code": 4401})
        # ...while the other visitor's valid token still does.
        comm, (connected, _) = await self.sockets.connect(other.token)
        self.assertTrue(connected)
        await self.sockets.close_all()


class MessageTest(ChatSocketTestBase):
    async def test_message_is_acked_and_broadcast_once(self):
        session = await self.start_session("Ann")
        try:
            comm, _ = await self.sockets.connect(session["token"])
            await comm.send_json_to({"type": "message", "text": "hi", "client_msg_id": "c1"})
            ack, skipped = await next_frame(comm, is_type("ack"))
            self.assertEqual(
                {k: ack[k] for k in ("type", "client_msg_id", "seq")}, {"type": "ack", "client_msg_id": "c1", "seq": 1}
            )
            frames = skipped + await drain(comm)
            events = [f for f in frames if f.get("type") == "event"]
            self.assertEqual(len(events), 1, frames)
            event = events[0]["event"]
            self.assertLessEqual(EVENT_FIELDS, set(event))
            self.assertLessEqual(SOURCE_FIELDS, set(event["source"]))
            self.assertEqual(event["room_id"], session["room_id"])
            self.assertEqual(event["seq"], 1)
            self.assertEqual(event["type"], "message")
            self.assertEqual(event["direction"], "inbound")
            self.assertEqual(event["content"], {"type": "text", "body": "hi"})
            self.assertEqual(event["source"]["participant_id"], session["participant_id"])
            self.assertEqual(event["source"]["channel_id"], "webchat")
            self.assertEqual(event["source"]["display_name"], "Ann")
            self.assertTrue(event["created_at"].endswith("Z"))
            stored = await database_sync_to_async(RoomEvent.objects.get)(room_id=session["room_id"])
            self.assertEqual(event["id"], stored.id)
            self.assertEqual(stored.idempotency_key, f"{session['participant_id']}:c1")

            # The same client_msg_id again (a retry after a lost ack): same seq, nothing new.
            await comm.send_json_to({"type": "message", "text": "hi", "client_msg_id": "c1"})
            ack2, skipped = await next_frame(comm, is_type("ack"))
            self.assertEqual((ack2["client_msg_id"], ack2["seq"]), ("c1", 1))
            frames = skipped + await drain(comm)
            self.assertEqual([f for f in frames if f.get("type") == "event"], [])
            self.assertEqual(await self.count_events(room_id=session["room_id"]), 1)

            # A new client_msg_id is a new message with the next seq.
            await comm.send_json_to({"type": "message", "text": "again", "client_msg_id": "c2"})
            ack3, _ = await next_frame(comm, is_type("ack"))
            self.assertEqual((ack3["client_msg_id"], ack3["seq"]), ("c2", 2))
            event2, _ = await next_frame(comm, is_event(2))
            self.assertEqual(event2["event"]["content"]["body"], "again")

            # Bad frames are answered with an error frame and do not kill the socket.
            await comm.send_json_to({"type": "message", "text": "  "})
            err, _ = await next_frame(comm, is_type("error"))
            self.assertEqual(err["code"], "invalid_input")
            await comm.send_to(text_data=json.dumps(["not", "an", "object"]))
            err, _ = await next_frame(comm, is_type("error"))
            self.assertEqual(err["code"], "bad_frame")
            await comm.send_json_to({"type": "nonsense"})
            err, _ = await next_frame(comm, is_type("error"))
            self.assertEqual(err["code"], "unknown_type")
            self.assertEqual(await self.count_events(room_id=session["room_id"]), 2)
        finally:
            await self.sockets.close_all()

    async def test_client_msg_ids_are_per_visitor(self):
        # Every visitor shares the web-chat channel; two visitors counting
        # from 1 must not swallow each other's messages as duplicates.
        first, second = await self.start_session("Ann"), await self.start_session("Bob")
        try:
            acks = []
            for session in (first, second):
                comm, _ = await self.sockets.connect(session["token"])
                await comm.send_json_to({"type": "message", "text": f"from {session['participant_id']}", "client_msg_id": "1"})
                ack, _ = await next_frame(comm, is_type("ack"))
                acks.append(ack)
            self.assertEqual([a["status"] for a in acks], ["stored", "stored"])
            self.assertEqual(await self.count_events(room_id=first["room_id"]), 1)
            self.assertEqual(await self.count_events(room_id=second["room_id"]), 1)
        finally:
            await self.sockets.close_all()

    async def test_other_socket_in_room_receives_and_other_room_does_not(self):
        session = await self.start_session("Ann")
        elsewhere = await self.start_session("Zed")
        try:
            ann, _ = await self.sockets.connect(session["token"])
            bob_id, bob_token = await join_room(session["room_id"], "Bob")
            bob, _ = await self.sockets.connect(bob_token)
            zed, _ = await self.sockets.connect(elsewhere["token"])

            await ann.send_json_to({"type": "message", "text": "hello Bob", "client_msg_id": "a1"})
            await next_frame(ann, is_type("ack"))
            frame, _ = await next_frame(bob, is_event(1))
            self.assertEqual(frame["event"]["content"]["body"], "hello Bob")
            self.assertEqual(frame["event"]["source"]["participant_id"], session["participant_id"])

            # Bob answers; Ann gets it too.
            await bob.send_json_to({"type": "message", "text": "hi Ann", "client_msg_id": "b1"})
            ack, _ = await next_frame(bob, is_type("ack"))
            self.assertEqual(ack["seq"], 2)
            frame, _ = await next_frame(ann, is_event(2))
            self.assertEqual(frame["event"]["source"]["participant_id"], bob_id)

            # Zed, in another room, saw nothing of any of it.
            leaked = [f for f in await drain(zed) if session["room_id"] in json.dumps(f) or f.get("type") == "event"]
            self.assertEqual(leaked, [])
            # And Zed's own message stays in Zed's room.
            await drain(ann)
            await drain(bob)
            await zed.send_json_to({"type": "message", "text": "private", "client_msg_id": "z1"})
            ack, _ = await next_frame(zed, is_type("ack"))
            self.assertEqual(ack["seq"], 1)
            for comm in (ann, bob):
                self.assertEqual([f for f in await drain(comm) if f.get("type") == "event"], [])
        finally:
            await self.sockets.close_all()

    async def test_resume_replays_later_events_in_order(self):
        session = await self.start_session("Ann")
        try:
            ann, _ = await self.sockets.connect(session["token"])
            for i in range(1, 5):
                await ann.send_json_to({"type": "message", "text": f"m{i}", "client_msg_id": f"r{i}"})
                ack, _ = await next_frame(ann, is_type("ack"))
                self.assertEqual(ack["seq"], i)
            await drain(ann)

            # A reconnecting client that had seen seq 1 asks for the rest.
            again, _ = await self.sockets.connect(session["token"])
            await again.send_json_to({"type": "resume", "after_seq": 1})
            frames = await drain(again)
            replayed = [f["event"] for f in frames if f.get("type") == "event"]
            self.assertEqual([e["seq"] for e in replayed], [2, 3, 4])
            self.assertEqual([e["content"]["body"] for e in replayed], ["m2", "m3", "m4"])
            for e in replayed:
                self.assertLessEqual(EVENT_FIELDS, set(e))
            # Nothing was re-stored by replaying.
            self.assertEqual(await self.count_events(room_id=session["room_id"]), 4)

            await again.send_json_to({"type": "resume", "after_seq": 4})
            self.assertEqual([f for f in await drain(again) if f.get("type") == "event"], [])
            await again.send_json_to({"type": "resume", "after_seq": -1})
            err, _ = await next_frame(again, is_type("error"))
            self.assertEqual(err["code"], "invalid_input")
        finally:
            await self.sockets.close_all()

    async def test_typing_is_ephemeral_for_the_other_socket(self):
        session = await self.start_session("Ann")
        elsewhere = await self.start_session("Zed")
        try:
            ann, _ = await self.sockets.connect(session["token"])
            _bob_id, bob_token = await join_room(session["room_id"], "Bob")
            bob, _ = await self.sockets.connect(bob_token)
            zed, _ = await self.sockets.connect(elsewhere["token"])

            await ann.send_json_to({"type": "typing", "state": "start"})
            frame, _ = await next_frame(bob, lambda f: f.get("type") == "ephemeral" and f.get("kind") == "typing_start")
            self.assertEqual(frame["participant_id"], session["participant_id"])
            self.assertEqual(frame["display_name"], "Ann")
            await ann.send_json_to({"type": "typing", "state": "stop"})
            frame, _ = await next_frame(bob, lambda f: f.get("type") == "ephemeral" and f.get("kind") == "typing_stop")
            self.assertEqual(frame["participant_id"], session["participant_id"])

            self.assertEqual(await self.count_events(), 0)  # never stored
            self.assertEqual([f for f in await drain(zed) if f.get("type") == "ephemeral"], [])
        finally:
            await self.sockets.close_all()

    async def test_read_updates_last_read_seq(self):
        session = await self.start_session("Ann")
        try:
            ann, _ = await self.sockets.connect(session["token"])
            _bob_id, bob_token = await join_room(session["room_id"], "Bob")
            bob, _ = await self.sockets.connect(bob_token)
            for i in (1, 2, 3):
                await bob.send_json_to({"type": "message", "text": f"b{i}", "client_msg_id": f"b{i}"})
                await next_frame(bob, is_type("ack"))

            await ann.send_json_to({"type": "read", "seq": 2})
            receipt, _ = await next_frame(bob, lambda f: f.get("type") == "ephemeral" and f.get("kind") == "read_receipt")
            self.assertEqual((receipt["participant_id"], receipt["seq"]), (session["participant_id"], 2))
            get_p = database_sync_to_async(Participant.objects.get)
            self.assertEqual((await get_p(pk=session["participant_id"])).last_read_seq, 2)

            # Never backwards: an older read receipt leaves it where it was.
            await ann.send_json_to({"type": "read", "seq": 1})
            await drain(bob)
            self.assertEqual((await get_p(pk=session["participant_id"])).last_read_seq, 2)
            await ann.send_json_to({"type": "read", "seq": 3})
            await next_frame(bob, lambda f: f.get("kind") == "read_receipt" and f.get("seq") == 3)
            self.assertEqual((await get_p(pk=session["participant_id"])).last_read_seq, 3)
        finally:
            await self.sockets.close_all()


class OtherChannelsReachSocketTest(ChatSocketTestBase):
    async def test_sms_and_signed_webhook_messages_reach_the_socket(self):
        session = await self.start_session("Ann")
        room_id = session["room_id"]

        @database_sync_to_async
        def bind_channels():
            sms = make_channel("sms-sock", channel_type="sms", secrets={"signing_secret": "s"})
            hook = make_channel("hook-sock", secrets={"signing_secret": "hook-secret"})
            ChannelBinding.objects.create(room_id=room_id, channel=sms, address="+15550123")
            ChannelBinding.objects.create(room_id=room_id, channel=hook, address="crm-42")

        await bind_channels()
        try:
            ann, _ = await self.sockets.connect(session["token"])

            # An SMS from the bound number, as the SMS webhook would hand it in.
            result = await database_sync_to_async(process_inbound)(
                InboundMessage(channel_id="sms-sock", sender="+15550123", text="by sms", provider_message_id="SM1")
            )
            self.assertEqual((result.status, result.room_id, result.seq), ("stored", room_id, 1))
            frame, _ = await next_frame(ann, is_event(1))
            self.assertEqual(frame["event"]["source"]["channel_id"], "sms-sock")
            self.assertEqual(frame["event"]["content"], {"type": "text", "body": "by sms"})
            self.assertEqual(frame["event"]["id"], result.event_id)

            # A signed webhook through the real view and middleware.
            def post():
                payload = {"id": "crm-msg-1", "sender": "crm-42", "text": "by webhook"}
                return post_signed(Client(), "/webhooks/hook-sock/", payload, "hook-secret")

            response = await sync_to_async(post)()
            self.assertEqual(response.status_code, 200, response.content)
            self.assertEqual((response.json()["room_id"], response.json()["seq"]), (room_id, 2))
            frame, _ = await next_frame(ann, is_event(2))
            self.assertEqual(frame["event"]["source"]["channel_id"], "hook-sock")
            self.assertEqual(frame["event"]["content"]["body"], "by webhook")

            # A webhook with a bad signature reaches nobody.
            def post_bad():
                return post_signed(Client(), "/webhooks/hook-sock/", {"id": "x", "sender": "crm-42", "text": "no"}, "wrong")

            self.assertEqual((await sync_to_async(post_bad)()).status_code, 403)
            self.assertEqual([f for f in await drain(ann) if f.get("type") == "event"], [])
            self.assertEqual(await self.count_events(room_id=room_id), 2)
        finally:
            await self.sockets.close_all()
