"""Hooks: registration and filters, priority, allow / block / modify, failures, timeouts, after-commit triggers."""

from __future__ import annotations

import threading
import time

from django.db import transaction
from django.test import TestCase, override_settings

from rooms import hooks, services
from rooms.enums import ChannelType, Direction, EventStatus
from rooms.hooks import HookContext, HookResult, HookTrigger, hook
from rooms.models import Delivery, Observation, RoomEvent, Task
from tests.rooms.fixtures import send, use_hook
from tests.support import make_channel


class RegistrationTests(TestCase):
    def setUp(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS)
        make_channel("sms-two", channel_type=ChannelType.SMS)
        make_channel("mail", channel_type=ChannelType.EMAIL)

    def test_decorator_registers_under_the_function_name_and_returns_it(self) -> None:
        def shout(event, ctx):
            return HookResult.allow()

        decorated = hook(HookTrigger.BEFORE_BROADCAST)(shout)
        name = f"{__name__}.{shout.__qualname__}"
        self.addCleanup(hooks.registry.unregister, HookTrigger.BEFORE_BROADCAST, name)

        self.assertIs(decorated, shout)
        registered = hooks.registry.for_trigger(HookTrigger.BEFORE_BROADCAST, HookContext(room_id=None))
        self.assertEqual([h.name for h in registered], [name])
        self.assertIs(registered[0].fn, shout)

    def test_same_name_replaces_and_unregister_removes(self) -> None:
        calls: list[str] = []
        use_hook(self, HookTrigger.BEFORE_BROADCAST, lambda e, c: calls.append("old"), name="tests.dup")
        use_hook(self, HookTrigger.BEFORE_BROADCAST, lambda e, c: calls.append("new"), name="tests.dup")
        send("sms-in", "+1555")
        self.assertEqual(calls, ["new"])

        hooks.registry.unregister(HookTrigger.BEFORE_BROADCAST, "tests.dup")
        self.assertNotIn("tests.dup", hooks.registry.names(HookTrigger.BEFORE_BROADCAST))
        send("sms-in", "+1555")
        self.assertEqual(calls, ["new"])

    def test_filters_are_anded(self) -> None:
        seen: list[tuple[str, str]] = []
        use_hook(
            self,
            HookTrigger.BEFORE_BROADCAST,
            lambda e, c: seen.append((c.channel_id, c.direction)),
            channel_types={ChannelType.SMS},
            channel_ids={"sms-in", "mail"},
            directions={Direction.INBOUND},
        )
        send("sms-in", "+1555", direction=Direction.INBOUND)  # type, id and direction match
        send("sms-in", "+1555", direction=Direction.OUTBOUND)  # direction does not
        send("sms-two", "+1555")  # id does not
        send("mail", "a@example.com")  # type does not
        self.assertEqual(seen, [("sms-in", "inbound")])

    def test_unset_filter_matches_everything(self) -> None:
        seen: list[str] = []
        use_hook(self, HookTrigger.BEFORE_BROADCAST, lambda e, c: seen.append(c.channel_id), directions={"outbound"})
        send("sms-in", "+1555", direction="outbound")
        send("mail", "a@example.com", direction="outbound")
        self.assertEqual(seen, ["sms-in", "mail"])

    def test_the_example_in_the_hooks_docstring_works(self) -> None:
        from rooms.content.kinds import content_text

        def no_shouting(event, ctx):
            text = content_text(event.content)
            if text.isupper():
                return HookResult.modify(content={"type": "text", "body": text.lower()})
            return HookResult.allow()

        use_hook(self, HookTrigger.BEFORE_BROADCAST, no_shouting, channel_types={"sms"}, priority=10)
        self.assertEqual(send("sms-in", "+1555", "HELLO").event.content["body"], "hello")
        self.assertEqual(send("mail", "a@example.com", "HELLO").event.content["body"], "HELLO")

    def test_hook_sees_the_event_and_its_room(self) -> None:
        seen: list[tuple] = []

        def look(event, ctx):
            seen.append((event.seq, event.content, ctx.room_id, ctx.channel_type, sorted(b.channel_id for b in ctx.bindings)))

        use_hook(self, HookTrigger.BEFORE_BROADCAST, look)
        result = send("sms-in", "+1555", "hi")
        self.assertEqual(seen, [(1, {"type": "text", "body": "hi"}, result.room_id, "sms", ["sms-in"])])


class PriorityTests(TestCase):
    def setUp(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS)

    def test_lower_priority_runs_first_ties_in_registration_order(self) -> None:
        order: list[str] = []
        use_hook(self, HookTrigger.BEFORE_BROADCAST, lambda e, c: order.append("p10"), priority=10)
        use_hook(self, HookTrigger.BEFORE_BROADCAST, lambda e, c: order.append("p-5"), priority=-5)
        use_hook(self, HookTrigger.BEFORE_BROADCAST, lambda e, c: order.append("p0-a"))
        use_hook(self, HookTrigger.BEFORE_BROADCAST, lambda e, c: order.append("p0-b"))
        send("sms-in", "+1555")
        self.assertEqual(order, ["p-5", "p0-a", "p0-b", "p10"])

    def test_later_hooks_see_an_earlier_modification(self) -> None:
        seen: list[str] = []
        use_hook(self, HookTrigger.BEFORE_BROADCAST, lambda e, c: seen.append(e.content["body"]), priority=2, name="tests.reader")
        use_hook(
            self,
            HookTrigger.BEFORE_BROADCAST,
            lambda e, c: HookResult.modify(content={"type": "text", "body": e.content["body"].upper()}),
            priority=1,
        )
        send("sms-in", "+1555", "quiet")
        self.assertEqual(seen, ["QUIET"])


class DecisionTests(TestCase):
    def setUp(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS)
        make_channel("mail", channel_type=ChannelType.EMAIL, provider="")
        self.room_id = send("sms-in", "+1555", "hello").room_id
        services.channel_attach(room_id=self.room_id, channel_id="mail", address="a@example.com")

    def test_allow_stores_and_fans_out(self) -> None:
        use_hook(self, HookTrigger.BEFORE_BROADCAST, lambda e, c: HookResult.allow())
        result = send("sms-in", "+1555", "fine")
        self.assertEqual((result.status, result.deliveries), ("stored", 1))

    def test_block_stores_the_event_blocked_with_no_deliveries_and_stops_the_chain(self) -> None:
        later: list[int] = []
        name = use_hook(self, HookTrigger.BEFORE_BROADCAST, lambda e, c: HookResult.block("profanity"), priority=1)
        use_hook(self, HookTrigger.BEFORE_BROADCAST, lambda e, c: later.append(e.seq), priority=2)

        result = send("sms-in", "+1555", "darn")

        self.assertEqual(result.status, "blocked")
        self.assertEqual(result.deliveries, 0)
        event = RoomEvent.objects.get(pk=result.event_id)
        self.assertEqual(event.status, EventStatus.BLOCKED)
        self.assertEqual(event.blocked_by, f"{name}: profanity")
        self.assertEqual(event.content["body"], "darn", "the blocked text is kept for the operators")
        self.assertFalse(Delivery.objects.filter(event=event).exists())
        self.assertEqual(later, [])

    def test_block_without_reason_names_the_hook(self) -> None:
        name = use_hook(self, HookTrigger.BEFORE_BROADCAST, lambda e, c: HookResult(hooks.HookAction.BLOCK))
        self.assertEqual(send("sms-in", "+1555").event.blocked_by, name)

    def test_modify_replaces_content_before_storing_and_transcoding(self) -> None:
        use_hook(
            self,
            HookTrigger.BEFORE_BROADCAST,
            lambda e, c: HookResult.modify(content={"type": "rich", "body": "<b>[redacted]</b>", "format": "html"}),
        )
        result = send("sms-in", "+1555", "my card is 4111")
        stored = RoomEvent.objects.get(pk=result.event_id)
        self.assertEqual(stored.content, {"type": "rich", "body": "<b>[redacted]</b>", "format": "html"})
        self.assertEqual(
            Delivery.objects.get(event=stored).content, {"type": "rich", "body": "<b>[redacted]</b>", "format": "html"}
        )

    def test_modify_merges_metadata(self) -> None:
        use_hook(self, HookTrigger.BEFORE_BROADCAST, lambda e, c: HookResult.modify(metadata={"sentiment": "calm"}))
        result = send("sms-in", "+1555", metadata={"source": "test"})
        self.assertEqual(RoomEvent.objects.get(pk=result.event_id).metadata, {"source": "test", "sentiment": "calm"})

    def test_modify_with_invalid_content_is_ignored_and_logged(self) -> None:
        use_hook(self, HookTrigger.BEFORE_BROADCAST, lambda e, c: HookResult.modify(content={"type": "text", "body": ""}))
        with self.assertLogs("rooms.inbound", "WARNING") as logs:
            result = send("sms-in", "+1555", "original")
        self.assertEqual(RoomEvent.objects.get(pk=result.event_id).content["body"], "original")
        self.assertIn("invalid content", logs.output[0])

    def test_a_hook_returning_nothing_allows(self) -> None:
        use_hook(self, HookTrigger.BEFORE_BROADCAST, lambda e, c: None)
        self.assertEqual(send("sms-in", "+1555").status, "stored")

    def test_async_hook_can_block(self) -> None:
        async def veto(event, ctx):
            return HookResult.block("async says no")

        use_hook(self, HookTrigger.BEFORE_BROADCAST, veto)
        self.assertEqual(send("sms-in", "+1555").status, "blocked")


class SideRecordTests(TestCase):
    def setUp(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS)

    def test_tasks_and_observations_from_a_hook_are_stored(self) -> None:
        use_hook(
            self,
            HookTrigger.BEFORE_BROADCAST,
            lambda e, c: HookResult.allow(
                tasks=({"title": "Call back", "description": "asked for a call"},),
                observations=({"kind": "intent", "summary": "wants a call", "data": {"score": 0.9}},),
            ),
        )
        created: list[str] = []
        use_hook(self, HookTrigger.ON_TASK_CREATED, lambda t, c: created.append(t.title))
        with self.captureOnCommitCallbacks(execute=True):
            result = send("sms-in", "+1555", "call me")
        task = Task.objects.get()
        self.assertEqual((task.room_id, task.title, task.description), (result.room_id, "Call back", "asked for a call"))
        obs = Observation.objects.get()
        self.assertEqual((obs.kind, obs.summary, obs.data), ("intent", "wants a call", {"score": 0.9}))
        self.assertEqual(created, ["Call back"])


class FailureTests(TestCase):
    def setUp(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS)

    def test_a_hook_that_raises_is_logged_and_skipped(self) -> None:
        after: list[str] = []

        def broken(event, ctx):
            raise RuntimeError("boom")

        name = use_hook(self, HookTrigger.BEFORE_BROADCAST, broken, priority=1)
        use_hook(
            self,
            HookTrigger.BEFORE_BROADCAST,
            lambda e, c: after.append("ran") or HookResult.modify(metadata={"checked": True}),
            priority=2,
        )
        with self.assertLogs("rooms.hooks", "ERROR") as logs:
            result = send("sms-in", "+1555", "hi")

        self.assertEqual(result.status, "stored")
        self.assertEqual(after, ["ran"])
        self.assertEqual(RoomEvent.objects.get(pk=result.event_id).metadata, {"checked": True})
        self.assertIn(name, logs.output[0])
        self.assertIn("RuntimeError: boom", "\n".join(logs.output))

    def test_a_hook_that_raises_on_a_notification_trigger_does_not_stop_the_others(self) -> None:
        seen: list[str] = []

        def broken(room, ctx):
            raise ValueError("nope")

        use_hook(self, HookTrigger.ON_ROOM_CREATED, broken, priority=1)
        use_hook(self, HookTrigger.ON_ROOM_CREATED, lambda room, ctx: seen.append(room.id), priority=2)
        with self.assertLogs("rooms.hooks", "ERROR"), self.captureOnCommitCallbacks(execute=True):
            result = send("sms-in", "+1555")
        self.assertEqual(seen, [result.room_id])

    def test_a_hook_with_a_timeout_that_overruns_is_skipped(self) -> None:
        release = threading.Event()
        self.addCleanup(release.set)

        def slow(event, ctx):
            release.wait(5)
            return HookResult.block("too late")

        name = use_hook(self, HookTrigger.BEFORE_BROADCAST, slow, timeout=0.1)
        started = time.monotonic()
        with self.assertLogs("rooms.hooks", "WARNING") as logs:
            result = send("sms-in", "+1555")
        self.assertLess(time.monotonic() - started, 2, "the pipeline did not wait for the slow hook")
        self.assertEqual(result.status, "stored")
        self.assertIn(f"hook {name} timed out", logs.output[0])

    def test_a_hook_with_a_timeout_that_answers_in_time_counts(self) -> None:
        use_hook(self, HookTrigger.BEFORE_BROADCAST, lambda e, c: HookResult.block("quick"), timeout=5)
        self.assertEqual(send("sms-in", "+1555").status, "blocked")

    @override_settings(ROOMKIT_HOOK_TIMEOUT_SECONDS=0.05)
    def test_a_plain_hook_over_the_default_timeout_has_its_result_ignored(self) -> None:
        def slow(event, ctx):
            time.sleep(0.1)
            return HookResult.block("late")

        use_hook(self, HookTrigger.BEFORE_BROADCAST, slow)
        with self.assertLogs("rooms.hooks", "WARNING"):
            self.assertEqual(send("sms-in", "+1555").status, "stored")


class AfterBroadcastTests(TestCase):
    def setUp(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS)

    def test_runs_only_after_commit_with_the_stored_event(self) -> None:
        seen: list[tuple] = []
        use_hook(self, HookTrigger.AFTER_BROADCAST, lambda e, c: seen.append((e.id, e.seq, c.channel_id, c.room_id)))
        with self.captureOnCommitCallbacks(execute=True):
            result = send("sms-in", "+1555")
            self.assertEqual(seen, [], "nothing runs inside the transaction")
        self.assertEqual(seen, [(result.event_id, 1, "sms-in", result.room_id)])

    def test_does_not_run_when_the_transaction_rolls_back(self) -> None:
        seen: list[str] = []
        use_hook(self, HookTrigger.AFTER_BROADCAST, lambda e, c: seen.append(e.id))
        with self.captureOnCommitCallbacks(execute=True):
            try:
                with transaction.atomic():
                    send("sms-in", "+1555")
                    raise RuntimeError("caller failed")
            except RuntimeError:
                pass
        self.assertEqual(seen, [])
        self.assertFalse(RoomEvent.objects.exists())

    def test_does_not_run_for_a_blocked_event(self) -> None:
        seen: list[str] = []
        use_hook(self, HookTrigger.BEFORE_BROADCAST, lambda e, c: HookResult.block("no"))
        use_hook(self, HookTrigger.AFTER_BROADCAST, lambda e, c: seen.append(e.id))
        with self.captureOnCommitCallbacks(execute=True):
            send("sms-in", "+1555")
        self.assertEqual(seen, [])

    def test_filters_apply_after_broadcast_too(self) -> None:
        make_channel("mail", channel_type=ChannelType.EMAIL)
        seen: list[str] = []
        use_hook(self, HookTrigger.AFTER_BROADCAST, lambda e, c: seen.append(c.channel_id), channel_types={"email"})
        with self.captureOnCommitCallbacks(execute=True):
            send("sms-in", "+1555")
            send("mail", "a@example.com")
        self.assertEqual(seen, ["mail"])
