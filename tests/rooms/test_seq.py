"""Per-room seq: gapless and unique whatever happens to each event, and under concurrent writers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.test import TestCase, TransactionTestCase
from django.utils import timezone

from rooms import services
from rooms.enums import ChannelType, EventType, RoomStatus
from rooms.errors import RoomKitError
from rooms.hooks import HookResult, HookTrigger
from rooms.models import Room, RoomEvent
from tests.rooms.fixtures import send, seqs, use_hook
from tests.support import make_channel


class GaplessTests(TestCase):
    def setUp(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS, provider="")
        make_channel("api", channel_type=ChannelType.API, provider="")

    def test_every_kind_of_outcome_takes_the_next_seq_and_failures_take_none(self) -> None:
        use_hook(
            self, HookTrigger.BEFORE_BROADCAST, lambda e, c: HookResult.block("no") if e.content.get("body") == "spam" else None
        )
        room_id = send("sms-in", "+1555", "hello").room_id  # 1 stored
        send("sms-in", "+1555", "spam")  # 2 blocked by a hook
        send("sms-in", "+1555", "loop", chain_depth=6)  # 3 blocked by chain depth
        send("sms-in", "+1555", "remark", event_type=EventType.NOTE)  # 4 internal note
        for bad in (
            {"content": {"type": "text", "body": ""}},
            {
                "content": {"type": "edit", "target_event_id": "nope", "new_content": {"type": "text", "body": "x"}},
                "event_type": "edit",
            },
            {"room_id": room_id, "participant_id": "someone-else"},
        ):
            with self.subTest(bad=bad), self.assertRaises(RoomKitError):
                send("sms-in", "+1555", "x", **bad)
        services.channel_mute(room_id=room_id, channel_id="sms-in")  # 5 system event
        send("sms-in", "+1555", "muted")  # 6 blocked: muted source
        send("sms-in", "+1555", "x", provider_message_id="p1")  # 7
        send("sms-in", "+1555", "x", provider_message_id="p1")  # duplicate: no seq
        services.room_pause(room_id=room_id)  # 8
        send("api", "api:1", room_id=room_id)  # 9, wakes the room

        self.assertEqual(seqs(room_id), list(range(1, 10)))
        self.assertEqual(Room.objects.get(pk=room_id).last_seq, 9)

    def test_identity_challenge_takes_two_seqs(self) -> None:
        use_hook(self, HookTrigger.ON_IDENTITY_UNKNOWN, lambda r, c: HookResult.challenge_sender("Who are you?"))
        result = send("sms-in", "+1555")
        self.assertEqual(seqs(result.room_id), [1, 2])
        self.assertEqual(Room.objects.get(pk=result.room_id).last_seq, 2)

    def test_each_room_counts_on_its_own(self) -> None:
        a = send("sms-in", "+1aaa")
        b = send("sms-in", "+1bbb")
        send("sms-in", "+1aaa")
        send("sms-in", "+1aaa")
        c = send("sms-in", "+1bbb")
        self.assertEqual(seqs(a.room_id), [1, 2, 3])
        self.assertEqual(seqs(b.room_id), [1, 2])
        self.assertEqual(c.seq, 2)


def _run_together(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run ``fn(i)`` in ``n`` threads released at once; return results (or exceptions) in order."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def worker(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fn(i)
        except Exception as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


class ConcurrentWritersTests(TransactionTestCase):
    """Threads with their own database connections, as separate processes would have."""

    def setUp(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS, provider="")
        make_channel("api", channel_type=ChannelType.API, provider="")

    def test_concurrent_messages_into_one_room_get_gapless_unique_seqs(self) -> None:
        room = services.room_create()
        threads, each = 4, 8

        def post(i: int) -> list[int]:
            return [send("api", f"api:{i}", f"m{j}", room_id=room.id).seq for j in range(each)]

        results = _run_together(threads, post)

        for r in results:
            self.assertIsInstance(r, list, r)
        got = sorted(s for r in results for s in r)
        self.assertEqual(got, list(range(1, threads * each + 1)))
        self.assertEqual(seqs(room.id), got)
        self.assertEqual(Room.objects.get(pk=room.id).last_seq, threads * each)
        for r in results:
            self.assertEqual(r, sorted(r), "one writer's messages keep their order")

    def test_concurrent_first_messages_from_one_sender_open_one_room(self) -> None:
        results = _run_together(4, lambda i: send("sms-in", "+1new", f"hello {i}"))
        for r in results:
            self.assertNotIsInstance(r, Exception, r)
        self.assertEqual({r.room_id for r in results}, {Room.objects.get().id})
        self.assertEqual(sorted(r.seq for r in results), [1, 2, 3, 4])

    def test_concurrent_copies_of_one_message_store_it_once(self) -> None:
        room_id = send("sms-in", "+1555", "first").room_id
        results = _run_together(4, lambda i: send("sms-in", "+1555", "same", provider_message_id="SM-1"))
        for r in results:
            self.assertNotIsInstance(r, Exception, r)
        self.assertEqual(sorted(r.status for r in results), ["duplicate"] * 3 + ["stored"])
        self.assertEqual(len({r.event_id for r in results}), 1)
        self.assertEqual(seqs(room_id), [1, 2])

    def test_sweep_does_not_close_a_room_that_a_message_just_woke(self) -> None:
        room = services.room_create(closed_after_seconds=60)
        services.room_pause(room_id=room.id)
        long_ago = timezone.now() - timedelta(hours=1)
        Room.objects.filter(pk=room.id).update(paused_at=long_ago)
        inside = threading.Event()
        release = threading.Event()

        def wake() -> None:
            try:
                with transaction.atomic():
                    send("api", "api:1", "I'm back", room_id=room.id)
                    inside.set()
                    release.wait(5)
            finally:
                connection.close()

        waker = threading.Thread(target=wake)
        waker.start()
        self.assertTrue(inside.wait(10))
        # The sweep sees the room paused for an hour, then waits for the room's
        # lock, which the message holds until it commits.
        timer = threading.Timer(0.3, release.set)
        timer.start()
        try:
            done = services.sweep_room_timers()
        finally:
            release.set()
            waker.join(10)
            timer.cancel()

        self.assertEqual(done, [])
        stored = Room.objects.get(pk=room.id)
        self.assertEqual(stored.status, RoomStatus.ACTIVE)
        self.assertIsNone(stored.closed_at)
        self.assertEqual(RoomEvent.objects.filter(room=room, type=EventType.ROOM_CLOSED).count(), 0)
