"""User code inside the inbound transaction cannot lose the message, and runs once per message.

A hook (or identity resolver) whose query fails would, on PostgreSQL, abort
the whole transaction; its work is contained in a savepoint instead. A
transaction that is retried (a group-commit batch rolled back) reuses each
hook's first decision, and a hook in a batch sees the events stored before its
message, batch-mates included.
"""

from __future__ import annotations

from django.db import DatabaseError, IntegrityError, connection
from django.test import TestCase, TransactionTestCase, override_settings

from rooms.enums import ChannelType, IdentificationStatus
from rooms.hooks import HookResult, HookTrigger
from rooms.inbound import InboundMessage, route_cache
from rooms.inbound import process as inbound
from rooms.inbound.identity import IdentityResult
from rooms.models import Observation, Participant, RoomEvent, Task
from tests.rooms.fixtures import send, use_hook
from tests.support import make_channel


def _bad_query() -> None:
    with connection.cursor() as cur:
        cur.execute("SELECT * FROM no_such_table_anywhere")


class ContainedHookTests(TestCase):
    def setUp(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS)

    def test_a_hook_whose_query_fails_is_skipped_and_the_message_is_stored(self) -> None:
        def broken(event, ctx):
            _bad_query()

        later: list[str] = []
        use_hook(self, HookTrigger.BEFORE_BROADCAST, broken, name="tests.broken", priority=1)
        use_hook(self, HookTrigger.BEFORE_BROADCAST, lambda e, c: later.append(e.seq), priority=2)

        result = send("sms-in", "+15550001", "still here")

        self.assertEqual(result.status, "stored")
        event = RoomEvent.objects.get(pk=result.event_id)
        self.assertEqual(event.content, {"type": "text", "body": "still here"})
        self.assertEqual(later, [event.seq], "the next hook ran, in the same transaction")
        obs = Observation.objects.get(kind="hook_failed")
        self.assertEqual(obs.event_id, event.id)
        self.assertEqual(obs.data["hook"], "tests.broken")
        self.assertIn("no_such_table_anywhere", obs.data["error"])
        # The transaction is usable after the failure: more messages go through.
        self.assertEqual(send("sms-in", "+15550001", "and again").status, "stored")

    def test_an_integrity_error_undoes_the_hook_s_own_writes_only(self) -> None:
        def half_done(event, ctx):
            Task.objects.create(id="t-dup", room_id=event.room_id, title="first write")
            Task.objects.create(id="t-dup", room_id=event.room_id, title="same key")  # IntegrityError

        use_hook(self, HookTrigger.BEFORE_BROADCAST, half_done, priority=1)
        use_hook(
            self,
            HookTrigger.BEFORE_BROADCAST,
            lambda e, c: HookResult.modify(content={"type": "text", "body": "modified"}),
            priority=2,
        )
        result = send("sms-in", "+15550001", "original")

        self.assertEqual(RoomEvent.objects.get(pk=result.event_id).content["body"], "modified")
        self.assertFalse(Task.objects.filter(pk="t-dup").exists(), "the failed hook's first write was rolled back with it")
        self.assertIn("IntegrityError", Observation.objects.get(kind="hook_failed").data["error"])

    def test_a_hook_that_swallows_its_failed_query_cannot_poison_the_transaction(self) -> None:
        def swallows(event, ctx):
            try:
                _bad_query()
            except DatabaseError:
                pass
            return HookResult.modify(metadata={"swallowed": True})

        use_hook(self, HookTrigger.BEFORE_BROADCAST, swallows)
        result = send("sms-in", "+15550001", "hello")

        self.assertEqual(result.status, "stored")
        event = RoomEvent.objects.get(pk=result.event_id)
        if connection.vendor == "postgresql":
            # The failed query aborted the transaction up to the hook's
            # savepoint: the hook failed, its decision is not applied.
            self.assertNotIn("swallowed", event.metadata)
            self.assertTrue(Observation.objects.filter(kind="hook_failed").exists())
        else:
            # SQLite goes on after a failed statement: the hook succeeded.
            self.assertEqual(event.metadata.get("swallowed"), True)

    def test_on_error_hears_of_the_failure_after_commit(self) -> None:
        heard: list[dict] = []
        use_hook(self, HookTrigger.BEFORE_BROADCAST, lambda e, c: 1 / 0, name="tests.divides")
        use_hook(self, HookTrigger.ON_ERROR, lambda payload, ctx: heard.append(payload))

        with self.captureOnCommitCallbacks(execute=True):
            result = send("sms-in", "+15550001", "hello")
            self.assertEqual(heard, [], "nothing is reported before the commit")

        self.assertEqual(len(heard), 1)
        self.assertEqual(heard[0]["hook"], "tests.divides")
        self.assertEqual(heard[0]["trigger"], "before_broadcast")
        self.assertEqual(heard[0]["room_id"], result.room_id)
        self.assertIn("ZeroDivisionError", heard[0]["error"])

    def test_a_failing_identity_hook_is_contained_too(self) -> None:
        def broken_identity(result, ctx):
            _bad_query()

        use_hook(self, HookTrigger.ON_IDENTITY_UNKNOWN, broken_identity)
        result = send("sms-in", "+15550001", "who am I")

        self.assertEqual(result.status, "stored")
        self.assertEqual(Participant.objects.get(pk=result.event.source_participant_id).identification, "unknown")
        self.assertEqual(Observation.objects.get(kind="hook_failed").data["trigger"], "on_identity_unknown")


class BrokenResolver:
    def resolve(self, *, channel, address, display_name) -> IdentityResult:
        _bad_query()
        return IdentityResult(IdentificationStatus.IDENTIFIED)


@override_settings(
    ROOMKIT_IDENTITY_RESOLVERS=["tests.rooms.test_hook_containment.BrokenResolver", "rooms.inbound.identity.AddressBookResolver"]
)
class ContainedResolverTests(TestCase):
    def test_a_resolver_whose_query_fails_counts_as_unknown(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS)
        result = send("sms-in", "+15550001", "hello")
        self.assertEqual(result.status, "stored")
        self.assertEqual(result.event.source_participant.identification, IdentificationStatus.UNKNOWN)


_TRIGGER = {
    "sqlite": [
        "CREATE TRIGGER boom_on_insert BEFORE INSERT ON rooms_roomevent "
        "WHEN NEW.content LIKE '%boom%' BEGIN SELECT RAISE(ABORT, 'boom refused'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION boom_refused() RETURNS trigger AS $$ BEGIN "
        "IF NEW.content::text LIKE '%boom%' THEN RAISE EXCEPTION 'boom refused'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER boom_on_insert BEFORE INSERT ON rooms_roomevent FOR EACH ROW EXECUTE FUNCTION boom_refused()",
    ],
}
_DROP = {
    "sqlite": ["DROP TRIGGER IF EXISTS boom_on_insert"],
    "postgresql": ["DROP TRIGGER IF EXISTS boom_on_insert ON rooms_roomevent", "DROP FUNCTION IF EXISTS boom_refused()"],
}


def _msg(sender: str, text: str) -> InboundMessage:
    return InboundMessage(channel_id="sms-in", sender=sender, text=text)


class HooksOncePerMessageTests(TransactionTestCase):
    """Batches are formed by hand (``_run_batch``), as in tests/rooms/test_group_commit.py."""

    def setUp(self) -> None:
        route_cache.clear()
        self.addCleanup(route_cache.clear)
        make_channel("sms-in", channel_type=ChannelType.SMS)
        self.room_a = send("sms-in", "+15550001", "first from a").room_id
        self.room_b = send("sms-in", "+15550002", "first from b").room_id

    def _refuse_boom_inserts(self) -> None:
        """A database trigger refuses any event whose content says "boom": a batch fails at its INSERT."""
        with connection.cursor() as cur:
            for sql in _TRIGGER[connection.vendor]:
                cur.execute(sql)

        def drop() -> None:
            with connection.cursor() as cur:
                for sql in _DROP[connection.vendor]:
                    cur.execute(sql)

        self.addCleanup(drop)

    def test_a_failed_batch_does_not_run_any_hook_twice(self) -> None:
        self._refuse_boom_inserts()
        calls: list[str] = []
        tasks_asked: list[str] = []

        def counting(event, ctx):
            calls.append(event.content["body"])
            tasks_asked.append(event.content["body"])
            return HookResult.allow(tasks=({"title": f"follow up {event.content['body']}"},))

        use_hook(self, HookTrigger.BEFORE_BROADCAST, counting)
        outcomes = inbound._run_batch(
            [inbound._prepare(m) for m in (_msg("+15550001", "a1"), _msg("+15550002", "boom"), _msg("+15550001", "a2"))]
        )

        self.assertEqual(outcomes[0].status, "stored")
        self.assertIsInstance(outcomes[1], (IntegrityError, DatabaseError))
        self.assertEqual(outcomes[2].status, "stored")
        # The batch ran every hook, rolled back, and each message went alone
        # reusing its decisions: one call per message.
        self.assertEqual(sorted(calls), ["a1", "a2", "boom"])
        # The tasks the decisions asked for were created once, with the events that stood.
        self.assertEqual(sorted(Task.objects.values_list("title", flat=True)), ["follow up a1", "follow up a2"])

    def test_a_transactional_hook_runs_again_because_its_writes_were_undone(self) -> None:
        self._refuse_boom_inserts()
        calls: list[str] = []

        def writes_in_the_transaction(event, ctx):
            calls.append(event.content["body"])
            Task.objects.create(room_id=event.room_id, title=f"row for {event.content['body']}")

        use_hook(self, HookTrigger.BEFORE_BROADCAST, writes_in_the_transaction, transactional=True)
        inbound._run_batch([inbound._prepare(m) for m in (_msg("+15550001", "a1"), _msg("+15550002", "boom"))])

        self.assertEqual(calls.count("a1"), 2, "called in the batch and again alone")
        self.assertEqual(list(Task.objects.values_list("title", flat=True)), ["row for a1"])

    def test_hooks_in_a_batch_see_the_events_stored_before_their_message(self) -> None:
        seen: list[tuple[int, int]] = []

        def counts_the_room(event, ctx):
            seen.append((event.seq, RoomEvent.objects.filter(room_id=event.room_id, seq__lt=event.seq).count()))

        use_hook(self, HookTrigger.BEFORE_BROADCAST, counts_the_room)
        outcomes = inbound._run_batch(
            [inbound._prepare(_msg("+15550001", f"a{i}")) for i in range(4)] + [inbound._prepare(_msg("+15550002", "b1"))]
        )

        self.assertEqual([o.status for o in outcomes], ["stored"] * 5)
        # Every event before each message was visible to its hook, and only those.
        self.assertEqual(seen, [(seq, seq - 1) for seq, _ in seen])
        self.assertEqual(sorted(s for s, _ in seen), [2, 2, 3, 4, 5])
        self.assertEqual(RoomEvent.objects.filter(room_id=self.room_a).count(), 5)

    def test_a_hook_failure_in_a_batch_costs_no_other_message(self) -> None:
        def broken_for_b(event, ctx):
            if event.content["body"] == "b1":
                _bad_query()

        use_hook(self, HookTrigger.BEFORE_BROADCAST, broken_for_b)
        outcomes = inbound._run_batch(
            [inbound._prepare(m) for m in (_msg("+15550001", "a1"), _msg("+15550002", "b1"), _msg("+15550001", "a2"))]
        )
        self.assertEqual([o.status for o in outcomes], ["stored"] * 3)
        self.assertEqual(Observation.objects.filter(kind="hook_failed").count(), 1)
