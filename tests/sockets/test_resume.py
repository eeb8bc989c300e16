"""Loss-free resume: every later event once, in order, then live; also while a burst races it."""

from __future__ import annotations

import threading
import time
from unittest import mock

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db import connection

from channels_app.webchat.consumer import RESUME_GRACE_SECONDS
from channels_app.webchat.sessions import chat_session_start
from rooms.inbound import InboundMessage, process_inbound
from rooms.models import ChannelBinding
from rooms.services import room_pause
from tests.sockets.helpers import drain, event_seqs, is_type, join_room, next_frame
from tests.sockets.test_chat_consumer import ChatSocketTestBase
from tests.support import make_channel


def _sms(room_id: str, channel_id: str = "sms-resume", address: str = "+15550199") -> None:
    sms = make_channel(channel_id, channel_type="sms", secrets={"signing_secret": "s"})
    ChannelBinding.objects.create(room_id=room_id, channel=sms, address=address)


def _post_sms(count: int, prefix: str, *, channel_id: str = "sms-resume", address: str = "+15550199") -> list[int]:
    try:
        return [
            process_inbound(
                InboundMessage(channel_id=channel_id, sender=address, text=f"{prefix}{i}", provider_message_id=f"{prefix}{i}")
            ).seq
            for i in range(count)
        ]
    finally:
        connection.close()


class ResumeTest(ChatSocketTestBase):
    async def test_burst_racing_the_resume_is_delivered_once_in_order_without_gaps(self):
        session = await sync_to_async(chat_session_start)(display_name="Ann", open_now=True)
        room_id = session.room_id
        await database_sync_to_async(_sms)(room_id)
        backlog = await sync_to_async(_post_sms)(500, "old-")
        self.assertEqual(backlog, list(range(1, 501)))

        burst_first_commit: list[float] = []
        burst_seqs: list[int] = []

        def burst() -> None:
            try:
                for i in range(120):
                    seq = process_inbound(
                        InboundMessage(
                            channel_id="sms-resume", sender="+15550199", text=f"new-{i}", provider_message_id=f"new-{i}"
                        )
                    ).seq
                    burst_seqs.append(seq)
                    if not burst_first_commit:
                        burst_first_commit.append(time.monotonic())
            finally:
                connection.close()

        # Small replay pages, so the replay takes several queries while the burst commits.
        with mock.patch("channels_app.webchat.consumer.REPLAY_PAGE", 40):
            try:
                comm, _ = await self.sockets.connect(session.token)
                await comm.send_json_to({"type": "resume", "after_seq": 20})
                # The replay has begun once its first frame is here: start the burst.
                frames: list[dict] = [await comm.receive_json_from(timeout=15)]
                writer = threading.Thread(target=burst)
                writer.start()
                last_backlog_at = None
                while len(event_seqs(frames)) < 480 + 120:
                    frame = await comm.receive_json_from(timeout=15)
                    frames.append(frame)
                    if frame.get("type") == "event" and frame["event"]["seq"] == 500:
                        last_backlog_at = time.monotonic()
                await sync_to_async(writer.join)()
                frames += await drain(comm)
            finally:
                await self.sockets.close_all()

        seqs = event_seqs(frames)
        self.assertEqual(burst_seqs, list(range(501, 621)))
        # Every event after 20, each once, in seq order: no gap, no duplicate.
        self.assertEqual(seqs, list(range(21, 621)))
        self.assertEqual(
            [f["event"]["content"]["body"] for f in frames if f.get("type") == "event"][:3], ["old-20", "old-21", "old-22"]
        )
        # The race really happened: the burst was committing while the backlog was replayed.
        self.assertIsNotNone(last_backlog_at)
        self.assertLess(
            burst_first_commit[0],
            last_backlog_at,
            f"replay ended {last_backlog_at - burst_first_commit[0]:.3f}s before the burst",
        )

    async def test_events_sent_live_before_the_resume_are_not_sent_again(self):
        session = await self.start_session("Ann")
        room_id = session["room_id"]
        await database_sync_to_async(_sms)(room_id)
        try:
            await sync_to_async(_post_sms)(2, "a-")  # seq 1, 2: seen by the client before it dropped
            comm, _ = await self.sockets.connect(session["token"])
            # A client that has not resumed within the grace gets events live.
            await sync_to_async(_post_sms)(3, "b-")
            live = event_seqs(await drain(comm, quiet=RESUME_GRACE_SECONDS + 0.5))
            self.assertEqual(live, [3, 4, 5])
            # Its resume (it had seen seq 1) replays only what this socket has not had.
            await comm.send_json_to({"type": "resume", "after_seq": 1})
            self.assertEqual(event_seqs(await drain(comm)), [2])
            # And live again.
            await sync_to_async(_post_sms)(1, "c-")
            self.assertEqual(event_seqs(await drain(comm)), [6])
        finally:
            await self.sockets.close_all()

    async def test_replay_shows_what_live_shows(self):
        # Internal notes and blocked events never go to sockets live, so a
        # replay skips them too; a resume from the middle replays the rest.
        session = await self.start_session("Ann")
        room_id = session["room_id"]
        try:
            watcher_id, watcher_token = await join_room(room_id, "Watcher")
            watcher, _ = await self.sockets.connect(watcher_token)
            await watcher.send_json_to({"type": "resume", "after_seq": 0})
            await next_frame(watcher, is_type("resumed"))
            ann, _ = await self.sockets.connect(session["token"])
            await ann.send_json_to({"type": "message", "text": "one", "client_msg_id": "1"})
            await next_frame(ann, is_type("ack"))
            await sync_to_async(room_pause)(room_id=room_id, reason="test")  # an internal system event
            await ann.send_json_to({"type": "message", "text": "two", "client_msg_id": "2"})
            ack, _ = await next_frame(ann, is_type("ack"))
            live = event_seqs(await drain(watcher))
            self.assertEqual(live, [1, ack["seq"]])
            self.assertEqual(ack["seq"], 3)

            again, _ = await self.sockets.connect(watcher_token)
            await again.send_json_to({"type": "resume", "after_seq": 0})
            self.assertEqual(event_seqs(await drain(again)), live)
        finally:
            await self.sockets.close_all()

    async def test_ack_comes_before_the_senders_own_event(self):
        session = await self.start_session("Ann")
        try:
            ann, _ = await self.sockets.connect(session["token"])
            for i in range(1, 21):
                await ann.send_json_to({"type": "message", "text": f"m{i}", "client_msg_id": f"c{i}"})
            frames = []
            while len([f for f in frames if f.get("type") in ("ack", "event")]) < 40:
                frames.append(await ann.receive_json_from(timeout=5))
            order = [
                ("ack", f["seq"]) if f["type"] == "ack" else ("event", f["event"]["seq"])
                for f in frames
                if f.get("type") in ("ack", "event")
            ]
            for seq in range(1, 21):
                self.assertLess(order.index(("ack", seq)), order.index(("event", seq)), order)
            self.assertEqual([s for kind, s in order if kind == "event"], list(range(1, 21)))
        finally:
            await self.sockets.close_all()

    async def test_resume_then_live_messages_continue(self):
        session = await self.start_session("Ann")
        try:
            ann, _ = await self.sockets.connect(session["token"])
            for i in range(1, 4):
                await ann.send_json_to({"type": "message", "text": f"m{i}", "client_msg_id": f"r{i}"})
                await next_frame(ann, is_type("ack"))
            await ann.disconnect()
            self.sockets.open.remove(ann)

            # Reconnect, resume from 3; a message typed while offline is sent once, even if sent twice.
            again, _ = await self.sockets.connect(session["token"])
            await again.send_json_to({"type": "resume", "after_seq": 3})
            await again.send_json_to({"type": "message", "text": "offline", "client_msg_id": "off-1"})
            await again.send_json_to({"type": "message", "text": "offline", "client_msg_id": "off-1"})
            frames = []
            for _ in range(2):
                ack, skipped = await next_frame(again, is_type("ack"))
                frames += [*skipped, ack]
            frames += await drain(again)
            acks = [f for f in frames if f["type"] == "ack"]
            self.assertEqual([(a["seq"], a["status"]) for a in acks], [(4, "stored"), (4, "duplicate")])
            [event] = [f["event"] for f in frames if f["type"] == "event"]
            self.assertEqual((event["seq"], event["content"]["body"]), (4, "offline"))
            self.assertEqual(await self.count_events(room_id=session["room_id"]), 4)
        finally:
            await self.sockets.close_all()
