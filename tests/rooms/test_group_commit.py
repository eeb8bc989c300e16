"""Group commit: messages that arrive together share a transaction and keep their own outcomes.

``_run_batch`` is what the head of the queue runs for everything queued behind
it; calling it with a chosen batch makes the sharing deterministic. These
tests commit (TransactionTestCase), as batches only form outside a caller's
transaction.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from django.db import connection
from django.test import SimpleTestCase, TransactionTestCase, override_settings

from rooms import services
from rooms.enums import ChannelType, EventStatus
from rooms.errors import InvalidInput
from rooms.hooks import HookAction, HookResult, HookTrigger
from rooms.inbound import InboundMessage, InboundResult, route_cache
from rooms.inbound import process as inbound
from rooms.inbound.group_commit import GroupCommit
from rooms.models import Delivery, Observation, RoomEvent
from tests.rooms.fixtures import send, seqs, use_hook
from tests.support import make_channel


def _batch(*messages: InboundMessage) -> list[InboundResult | Exception]:
    return inbound._run_batch([inbound._prepare(m) for m in messages])


def _msg(sender: str, text: str, **fields) -> InboundMessage:
    return InboundMessage(channel_id="sms-in", sender=sender, text=text, **fields)


class GroupCommitQueueTests(SimpleTestCase):
    def test_callers_queued_behind_a_running_batch_share_the_next_one(self) -> None:
        release = threading.Event()
        sizes: list[int] = []

        def run_batch(items: Sequence[int]) -> list:
            sizes.append(len(items))
            if len(sizes) == 1:
                release.wait(10)
            return [ValueError(f"bad {i}") if i == 3 else i * 10 for i in items]

        group: GroupCommit[int, int] = GroupCommit(run_batch)
        outcomes: dict[int, object] = {}

        def call(i: int) -> None:
            try:
                outcomes[i] = group.submit(i)
            except ValueError as exc:
                outcomes[i] = str(exc)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
        threads[0].start()
        while not sizes:
            time.sleep(0.001)
        for t in threads[1:]:
            t.start()
        deadline = time.monotonic() + 10
        while len(group._queue) < 6 and time.monotonic() < deadline:
            time.sleep(0.001)
        release.set()
        for t in threads:
            t.join(10)
        self.assertEqual(sizes, [1, 5])
        # Each caller gets its own outcome; the error is raised in its caller only.
        self.assertEqual(outcomes, {0: 0, 1: 10, 2: 20, 3: "bad 3", 4: 40, 5: 50})

    def test_batches_are_capped(self) -> None:
        release = threading.Event()
        sizes: list[int] = []

        def run_batch(items: Sequence[int]) -> list:
            sizes.append(len(items))
            if len(sizes) == 1:
                release.wait(10)
            return list(items)

        group: GroupCommit[int, int] = GroupCommit(run_batch, max_batch=3)
        threads = [threading.Thread(target=group.submit, args=(i,)) for i in range(8)]
        threads[0].start()
        while not sizes:
            time.sleep(0.001)
        for t in threads[1:]:
            t.start()
        while len(group._queue) < 8:
            time.sleep(0.001)
        release.set()
        for t in threads:
            t.join(10)
        self.assertEqual(sizes, [1, 3, 3, 1])

    def test_a_submit_from_inside_a_batch_runs_at_once(self) -> None:
        # Work done on commit may send another message from the leader's thread.
        group: GroupCommit[int, int] = GroupCommit(lambda items: [group.submit(-i) if i > 0 else i for i in items])
        done = threading.Event()
        result: list[int] = []
        threading.Thread(target=lambda: (result.append(group.submit(5)), done.set()), daemon=True).start()
        self.assertTrue(done.wait(5), "a nested submit waited for its own batch")
        self.assertEqual(result, [-5])


class SharedTransactionTests(TransactionTestCase):
    def setUp(self) -> None:
        route_cache.clear()
        self.addCleanup(route_cache.clear)
        make_channel("sms-in", channel_type=ChannelType.SMS)
        # Known senders: their routes are cached, so their messages may share.
        self.room_a = send("sms-in", "+1555000001", "first from a").room_id
        self.room_b = send("sms-in", "+1555000002", "first from b").room_id

    def test_each_message_gets_its_own_event_in_order(self) -> None:
        outcomes = _batch(
            _msg("+1555000001", "a1"), _msg("+1555000002", "b1"), _msg("+1555000001", "a2"), _msg("+1555000002", "b2")
        )
        self.assertEqual([o.status for o in outcomes], ["stored"] * 4)
        self.assertEqual([o.room_id for o in outcomes], [self.room_a, self.room_b, self.room_a, self.room_b])
        self.assertEqual([o.event.content["body"] for o in outcomes], ["a1", "b1", "a2", "b2"])
        self.assertEqual([o.seq for o in outcomes], [2, 2, 3, 3])
        self.assertEqual(seqs(self.room_a), [1, 2, 3])
        stored = RoomEvent.objects.get(room_id=self.room_a, seq=3)
        self.assertEqual(stored.content["body"], "a2")
        self.assertEqual(stored.source_participant_id, outcomes[0].event.source_participant_id)

    def test_duplicates_inside_and_outside_the_batch_return_the_first(self) -> None:
        kept = send("sms-in", "+1555000001", "keyed", provider_message_id="SM1")
        outcomes = _batch(
            _msg("+1555000001", "again", provider_message_id="SM1"),
            _msg("+1555000002", "b", provider_message_id="SM2"),
            _msg("+1555000002", "b copy", provider_message_id="SM2"),
        )
        self.assertEqual([o.status for o in outcomes], ["duplicate", "stored", "duplicate"])
        self.assertEqual(outcomes[0].event.id, kept.event.id)
        self.assertEqual(outcomes[2].event.id, outcomes[1].event.id)
        self.assertEqual(RoomEvent.objects.filter(provider_message_id="SM2").count(), 1)
        self.assertEqual(seqs(self.room_a), [1, 2])
        self.assertEqual(seqs(self.room_b), [1, 2])

    def test_new_senders_and_edits_go_alone_beside_the_batch(self) -> None:
        outcomes = _batch(
            _msg("+1555000001", "a1"),
            _msg("+1555000009", "new sender"),
            _msg("+1555000002", "b1"),
        )
        self.assertEqual([o.status for o in outcomes], ["stored"] * 3)
        self.assertNotIn(outcomes[1].room_id, (self.room_a, self.room_b))
        self.assertEqual(outcomes[1].seq, 1)
        original = outcomes[0].event
        edit = _msg(
            "+1555000001",
            "",
            content={"type": "edit", "target_event_id": original.id, "new_content": {"type": "text", "body": "a1!"}},
            event_type="edit",
        )
        outcomes = _batch(edit, _msg("+1555000002", "b2"))
        self.assertEqual([o.status for o in outcomes], ["stored", "stored"])
        self.assertIsNotNone(RoomEvent.objects.get(pk=original.id).edited_at)

    def test_a_stale_route_sends_every_message_alone(self) -> None:
        services.channel_mute(room_id=self.room_a, channel_id="sms-in", address="+1555000001")
        outcomes = _batch(_msg("+1555000002", "b1"), _msg("+1555000001", "a1"))
        self.assertEqual([o.status for o in outcomes], ["stored", "blocked"])
        self.assertEqual(outcomes[1].reason, "muted")
        # Seq 2 of room A is the "muted" system event.
        self.assertEqual(seqs(self.room_a), [1, 2, 3])
        self.assertEqual(seqs(self.room_b), [1, 2])

    def test_hooks_decide_for_each_message(self) -> None:
        def moderate(event, ctx) -> HookResult:
            body = event.content.get("body", "")
            if "spam" in body:
                return HookResult(action=HookAction.BLOCK, reason="spam")
            if "shout" in body:
                return HookResult(action=HookAction.MODIFY, content={"type": "text", "body": body.upper()})
            return HookResult()

        use_hook(self, HookTrigger.BEFORE_BROADCAST, moderate)
        outcomes = _batch(_msg("+1555000001", "spam!"), _msg("+1555000002", "shout"), _msg("+1555000001", "fine"))
        self.assertEqual([o.status for o in outcomes], ["blocked", "stored", "stored"])
        self.assertTrue(outcomes[0].reason.endswith("spam"))
        self.assertEqual(RoomEvent.objects.get(pk=outcomes[1].event.id).content["body"], "SHOUT")

    def test_chain_depth_and_deliveries_are_kept_per_message(self) -> None:
        make_channel("crm", channel_type=ChannelType.WEBHOOK, config={"url": "http://127.0.0.1:9/"})
        services.channel_attach(room_id=self.room_a, channel_id="crm", address="crm-a")
        send("sms-in", "+1555000001", "warm the new route")
        outcomes = _batch(_msg("+1555000001", "deep", chain_depth=6), _msg("+1555000001", "ok"), _msg("+1555000002", "b"))
        self.assertEqual([o.status for o in outcomes], ["blocked", "stored", "stored"])
        self.assertEqual(outcomes[0].reason, "chain_depth_exceeded")
        self.assertTrue(Observation.objects.filter(event_id=outcomes[0].event.id, kind="chain_depth_exceeded").exists())
        self.assertEqual([o.deliveries for o in outcomes], [0, 1, 0])
        delivery = Delivery.objects.get(event_id=outcomes[1].event.id)
        self.assertEqual(delivery.recipient, "crm-a")
        self.assertEqual(delivery.status, "pending")

    def test_bad_input_is_refused_in_the_callers_thread_before_any_batch(self) -> None:
        with self.assertRaises(InvalidInput):
            inbound._prepare(InboundMessage(channel_id="sms-in", sender="+1555000001"))


# The senders share the room, so each message is planned as Delivery rows to
# the seven others' SMS bindings; sending them is not what is tested here.
@override_settings(ROOMKIT_TASK_MODE="off")
class ConcurrentSendersTests(TransactionTestCase):
    def test_threads_sending_at_once_share_commits_and_keep_seq_gapless(self) -> None:
        route_cache.clear()
        self.addCleanup(route_cache.clear)
        make_channel("sms-in", channel_type=ChannelType.SMS)
        senders = [f"+15550001{k:02d}" for k in range(8)]
        first = send("sms-in", senders[0], "open")
        for s in senders[1:]:
            services.channel_attach(room_id=first.room_id, channel_id="sms-in", address=s)
            send("sms-in", s, "warm")
        sizes: list[int] = []
        real = inbound._group._run_batch

        def recording(batch):
            sizes.append(len(batch))
            return real(batch)

        inbound._group._run_batch = recording
        self.addCleanup(setattr, inbound._group, "_run_batch", real)
        mismatches: list[str] = []

        def sender(s: str) -> None:
            try:
                for i in range(40):
                    text = f"{s} {i}"
                    result = send("sms-in", s, text, provider_message_id=f"{s}-{i}")
                    if result.status != "stored" or result.event.content["body"] != text or result.room_id != first.room_id:
                        mismatches.append(text)
            finally:
                connection.close()

        threads = [threading.Thread(target=sender, args=(s,)) for s in senders]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(mismatches, [])
        stored = list(RoomEvent.objects.filter(room_id=first.room_id).order_by("seq").values_list("seq", "status"))
        self.assertEqual([s for s, _ in stored], list(range(1, len(stored) + 1)))
        self.assertEqual(RoomEvent.objects.filter(provider_message_id__startswith="+1555").count(), 8 * 40)
        self.assertTrue(all(status == EventStatus.DELIVERED for _, status in stored))
        self.assertEqual(sum(sizes), 8 * 40)
        self.assertGreater(max(sizes), 1, "no two messages ever shared a commit")
