"""Duplicates: a repeat of a provider message id or idempotency key returns the first result and does nothing else."""

from __future__ import annotations

from django.test import TestCase

from rooms import services
from rooms.enums import ChannelType, EventStatus
from rooms.hooks import HookResult, HookTrigger
from rooms.models import Delivery, Room
from tests.rooms.fixtures import row_counts, send, use_hook
from tests.support import make_channel


class ProviderMessageIdTests(TestCase):
    def setUp(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS)
        make_channel("sms-other", channel_type=ChannelType.SMS)
        make_channel("mail", channel_type=ChannelType.EMAIL)

    def test_repeat_returns_the_first_event_and_writes_nothing(self) -> None:
        first = send("sms-in", "+1555", "hi", provider_message_id="SM1")
        services.channel_attach(room_id=first.room_id, channel_id="mail", address="a@example.com")
        second = send("sms-in", "+1555", "next", provider_message_id="SM2")
        self.assertEqual(second.deliveries, 1)
        before = row_counts()
        last_seq = Room.objects.get(pk=first.room_id).last_seq

        repeat = send("sms-in", "+1555", "next", provider_message_id="SM2")

        self.assertTrue(repeat.duplicate)
        self.assertEqual(repeat.status, "duplicate")
        self.assertEqual((repeat.event_id, repeat.seq, repeat.room_id), (second.event_id, second.seq, second.room_id))
        self.assertEqual(row_counts(), before)
        self.assertEqual(Room.objects.get(pk=first.room_id).last_seq, last_seq)
        self.assertEqual(Delivery.objects.filter(event_id=second.event_id).count(), 1)

    def test_repeat_with_other_content_or_sender_is_still_the_first(self) -> None:
        first = send("sms-in", "+1555", "hi", provider_message_id="SM1")
        repeat = send("sms-in", "+1666", "something else", provider_message_id="SM1")
        self.assertTrue(repeat.duplicate)
        self.assertEqual(repeat.event.content, {"type": "text", "body": "hi"})
        self.assertEqual(Room.objects.count(), 1, "the other sender did not open a room")
        self.assertEqual(repeat.room_id, first.room_id)

    def test_the_key_is_unique_per_channel_only(self) -> None:
        a = send("sms-in", "+1555", provider_message_id="SM1")
        b = send("sms-other", "+1555", provider_message_id="SM1")
        self.assertFalse(b.duplicate)
        self.assertNotEqual(a.event_id, b.event_id)

    def test_empty_keys_are_no_keys(self) -> None:
        for field in ("provider_message_id", "idempotency_key"):
            with self.subTest(field):
                a = send("sms-in", "+1555", "one", **{field: ""})
                b = send("sms-in", "+1555", "two", **{field: ""})
                self.assertEqual((a.status, b.status), ("stored", "stored"))
                self.assertEqual(b.seq, a.seq + 1)

    def test_messages_without_keys_are_never_duplicates(self) -> None:
        a = send("sms-in", "+1555", "same")
        b = send("sms-in", "+1555", "same")
        self.assertFalse(b.duplicate)
        self.assertEqual((a.seq, b.seq), (1, 2))

    def test_repeat_of_a_blocked_message_stays_blocked_and_runs_no_hook(self) -> None:
        calls: list[str] = []

        def veto(event, ctx):
            calls.append(event.content["body"])
            return HookResult.block("spam")

        use_hook(self, HookTrigger.BEFORE_BROADCAST, veto)
        first = send("sms-in", "+1555", "buy now", provider_message_id="SM9")
        repeat = send("sms-in", "+1555", "buy now", provider_message_id="SM9")
        self.assertEqual(first.status, "blocked")
        self.assertTrue(repeat.duplicate)
        self.assertTrue(repeat.blocked)
        self.assertEqual(repeat.event.status, EventStatus.BLOCKED)
        self.assertEqual(calls, ["buy now"])

    def test_repeat_fires_no_after_commit_work(self) -> None:
        seen: list[str] = []
        use_hook(self, HookTrigger.AFTER_BROADCAST, lambda event, ctx: seen.append(event.id))
        with self.captureOnCommitCallbacks(execute=True):
            first = send("sms-in", "+1555", provider_message_id="SM1")
        with self.captureOnCommitCallbacks(execute=True):
            send("sms-in", "+1555", provider_message_id="SM1")
        self.assertEqual(seen, [first.event_id])


class IdempotencyKeyTests(TestCase):
    def setUp(self) -> None:
        make_channel("api", channel_type=ChannelType.API, provider="")
        self.room = services.room_create()

    def test_repeat_returns_the_first_event(self) -> None:
        first = send("api", "api:1:bob", "hi", room_id=self.room.id, idempotency_key="k-1")
        repeat = send("api", "api:1:bob", "hi", room_id=self.room.id, idempotency_key="k-1")
        self.assertTrue(repeat.duplicate)
        self.assertEqual(repeat.event_id, first.event_id)
        self.assertEqual(Room.objects.get(pk=self.room.id).last_seq, first.seq)

    def test_keys_are_separate_from_provider_ids(self) -> None:
        first = send("api", "api:1:bob", room_id=self.room.id, idempotency_key="same")
        other = send("api", "api:1:bob", room_id=self.room.id, provider_message_id="same")
        self.assertFalse(other.duplicate)
        self.assertEqual(other.seq, first.seq + 1)

    def test_either_key_finds_the_first(self) -> None:
        first = send("api", "api:1:bob", room_id=self.room.id, idempotency_key="k", provider_message_id="p")
        self.assertEqual(send("api", "api:1:bob", room_id=self.room.id, idempotency_key="k").event_id, first.event_id)
        self.assertEqual(send("api", "api:1:bob", room_id=self.room.id, provider_message_id="p").event_id, first.event_id)

    def test_key_is_unique_per_channel_across_rooms(self) -> None:
        other_room = services.room_create()
        first = send("api", "api:1:bob", room_id=self.room.id, idempotency_key="k")
        repeat = send("api", "api:1:bob", room_id=other_room.id, idempotency_key="k")
        self.assertTrue(repeat.duplicate)
        self.assertEqual(repeat.room_id, first.room_id)
