"""Event frames reach a socket in ``seq`` order, all of them, even when the channel layer reorders or loses them.

Writers are threads calling the inbound path at once (as Daphne's threads
serve concurrent webhooks), so events are published from many threads after
their commits, in whatever order the threads get there. The layer is the one
the pass configures (in-memory, or Redis with ``REDIS_URL``); the recovery
tests make it lose frames: a layer with a tiny inbox (really full, as in
production under load) and one that skips chosen frames, including the very
last one, which no later frame reveals.
"""

from __future__ import annotations

import threading
import time

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.test import override_settings

from channels_app.webchat.services import webchat_events_after
from channels_app.webchat.sessions import chat_session_start
from rooms.inbound import InboundMessage, process_inbound
from rooms.models import ChannelBinding
from rooms.realtime import broadcast as realtime
from rooms.realtime import channel_layer as layers
from tests.sockets.helpers import is_type, join_room, next_frame
from tests.sockets.lossy_layer import layer_settings
from tests.sockets.test_chat_consumer import ChatSocketTestBase
from tests.support import make_channel

SMS = "sms-order"


SENDER = "+15550200"


def _bind_sms(room_id: str) -> None:
    # One bound sender for every writer: its own messages are not delivered back to it.
    sms = make_channel(SMS, channel_type="sms", secrets={"signing_secret": "s"})
    ChannelBinding.objects.create(room_id=room_id, channel=sms, address=SENDER)


def _write(sender: int, count: int, *, hidden_every: int = 0, errors: list[str]) -> None:
    """``count`` messages from writer ``sender``; every ``hidden_every``-th an internal one sockets never see."""
    try:
        for n in range(count):
            internal = hidden_every and n % hidden_every == hidden_every - 1
            process_inbound(
                InboundMessage(
                    channel_id=SMS,
                    sender=SENDER,
                    text=f"w{sender}-{n}",
                    provider_message_id=f"w{sender}-{n}",
                    visibility="internal" if internal else None,
                )
            )
    except Exception as exc:  # reported by the test
        errors.append(repr(exc))
    finally:
        connection.close()


def write_concurrently(writers: int, count: int, *, hidden_every: int = 0) -> None:
    errors: list[str] = []
    threads = [
        threading.Thread(target=_write, args=(w, count), kwargs={"hidden_every": hidden_every, "errors": errors})
        for w in range(writers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors


def visible_seqs(room_id: str) -> list[int]:
    seqs: list[int] = []
    after = 0
    while True:
        events, last = webchat_events_after(room_id, after, limit=500)
        seqs += [e["seq"] for e in events]
        if last == after:
            return seqs
        after = last


async def event_seqs_until(comm, wanted: int, *, timeout: float) -> list[int]:
    """The seqs of the event frames a socket gets, in arrival order, until it has ``wanted`` (or the deadline)."""
    seqs: list[int] = []
    deadline = time.monotonic() + timeout
    while len(seqs) < wanted:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            frame = await comm.receive_json_from(timeout=remaining)
        except TimeoutError:
            break
        if frame.get("type") == "event":
            seqs.append(frame["event"]["seq"])
    return seqs


class OrderTest(ChatSocketTestBase):
    async def open_resumed(self, token: str):
        comm, _ = await self.sockets.connect(token)
        await comm.send_json_to({"type": "resume", "after_seq": 0})
        await next_frame(comm, is_type("resumed"))
        return comm

    async def test_concurrent_writers_events_reach_every_socket_in_seq_order(self):
        session = await sync_to_async(chat_session_start)(display_name="Ann", open_now=True)
        room_id = session.room_id
        await database_sync_to_async(_bind_sms)(room_id)
        _, bob_token = await join_room(room_id, "Bob")
        try:
            ann = await self.open_resumed(session.token)
            bob = await self.open_resumed(bob_token)
            # Every fifth message is internal: its seq is taken, sockets never see it.
            await sync_to_async(write_concurrently)(8, 40, hidden_every=5)
            expected = await database_sync_to_async(visible_seqs)(room_id)
            self.assertEqual(len(expected), 8 * 32)
            for comm in (ann, bob):
                got = await event_seqs_until(comm, len(expected), timeout=30)
                self.assertEqual(got, expected)
                self.assertTrue(await comm.receive_nothing(0.3), "a frame came twice")
        finally:
            await self.sockets.close_all()

    async def test_frames_a_full_inbox_refused_still_reach_the_socket_in_order(self):
        # An inbox of two messages: a burst overflows it, in the Redis layer
        # (its group_send skips a full inbox) and in the in-memory one alike.
        session = await sync_to_async(chat_session_start)(display_name="Ann", open_now=True)
        room_id = session.room_id
        await database_sync_to_async(_bind_sms)(room_id)
        refused_before = layers.redis_layer_stats["refused"]
        recovered_before = realtime.stats["recovered_events"]
        with override_settings(CHANNEL_LAYERS=layer_settings(capacity=2)):
            try:
                ann = await self.open_resumed(session.token)
                await sync_to_async(write_concurrently)(6, 30)
                expected = await database_sync_to_async(visible_seqs)(room_id)
                self.assertEqual(len(expected), 180)
                # The last frames may be lost too: the catch-up check finds them.
                got = await event_seqs_until(ann, len(expected), timeout=4 * realtime.CATCH_UP_CHECK_SECONDS + 20)
                self.assertEqual(got, expected)
            finally:
                await self.sockets.close_all()
        self.assertGreater(realtime.stats["recovered_events"], recovered_before, "nothing was lost: the test proved nothing")
        if settings.REDIS_URL:
            self.assertGreater(layers.redis_layer_stats["refused"], refused_before, "refusals are counted (and logged)")

    async def test_lost_frames_are_sent_from_the_database_even_the_last_one(self):
        session = await sync_to_async(chat_session_start)(display_name="Ann", open_now=True)
        room_id = session.room_id
        await database_sync_to_async(_bind_sms)(room_id)
        lost = [3, 4, 5, 11, 20]  # a run, a single one, and the last (nothing after it reveals the gap)
        with override_settings(CHANNEL_LAYERS=layer_settings(drop_seqs=lost)):
            try:
                ann = await self.open_resumed(session.token)
                with self.assertLogs("rooms.realtime.broadcast", "WARNING") as logged:
                    await sync_to_async(_write)(0, 20, errors=[])
                    started = time.monotonic()
                    got = await event_seqs_until(ann, 20, timeout=4 * realtime.CATCH_UP_CHECK_SECONDS + 5)
                    waited = time.monotonic() - started
                self.assertEqual(got, list(range(1, 21)))
                self.assertEqual(sorted(get_channel_layer().dropped), lost)
                self.assertIn("sent from the database", "\n".join(logged.output))
                # The last one came from the periodic check, within two of its intervals.
                self.assertLess(waited, 2 * realtime.CATCH_UP_CHECK_SECONDS + 3)
            finally:
                await self.sockets.close_all()
