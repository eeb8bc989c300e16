"""Per-channel resilience, exactly as configured: retry policy, Retry-After, circuit breaker, rate limits.

Deliveries go over real HTTP to a FakeHTTPServer through the same rooms as
test_outbound (hook-in → hook-out). With ``REDIS_URL`` the breaker and the
rate windows live in Redis, otherwise in memory; every test here runs in both.
Concurrency tests use real threads (and, with Redis, real worker processes)
against the same breaker.
"""

from __future__ import annotations

import threading
import time
import unittest
import uuid
from datetime import timedelta
from email.utils import formatdate

from django.conf import settings
from django.db import connections
from django.test import TransactionTestCase
from django.utils import timezone

from channels_app import resilience
from channels_app.delivery_policy import CircuitBreakerPolicy, parse_delivery_policy
from channels_app.services import delivery_attempt, sweep_outbox
from rooms.models import Delivery
from tests.channels_app.helpers import run_until_settled
from tests.channels_app.test_outbound import OutboundTestCase, _closed_port
from tests.concurrency.processes import VENV_BIN, child_env, start_child
from tests.support import FakeHTTPServer, RecordedRequest, make_channel

NO_RETRY = {"max_retries": 0}


def seconds_until(when) -> float:
    return (when - timezone.now()).total_seconds()


def breaker_of(channel_id: str, config: dict) -> resilience.BreakerState:
    return resilience.breaker_state(channel_id, parse_delivery_policy(config).circuit_breaker)


def wait_for(condition, *, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class RetryPolicyTests(OutboundTestCase):
    def test_max_retries_bounds_the_attempts(self) -> None:
        self.server.default = (500, {"error": "down"}, {})
        self.open_room({"retry": {"max_retries": 2, "base_delay_seconds": 0.02, "max_delay_seconds": 0.05}})

        delivery = run_until_settled(self.delivery_for(self.send("hello")["event_id"]).pk)

        self.assertEqual((delivery.status, delivery.attempts), ("dead", 3))
        self.assertEqual(len(self.server.requests), 3)

    def test_zero_retries_dead_letters_the_first_failure(self) -> None:
        self.server.default = (503, {}, {})
        self.open_room({"retry": NO_RETRY})

        delivery = self.delivery_for(self.send("hello")["event_id"])

        self.assertEqual((delivery.status, delivery.attempts), ("dead", 1))

    def test_backoff_follows_base_multiplier_and_never_exceeds_max_delay(self) -> None:
        self.server.default = (500, {"error": "down"}, {})
        config = {
            "retry": {"max_retries": 7, "base_delay_seconds": 1, "multiplier": 10, "max_delay_seconds": 700},
            "circuit_breaker": {"failure_threshold": 100},  # this test is about the retries alone
        }
        self.open_room(config)
        delivery = self.delivery_for(self.send("hello")["event_id"])
        delays = []
        for _ in range(7):
            self.assertEqual(delivery.status, "pending")
            delays.append((delivery.next_attempt_at - delivery.updated_at).total_seconds())
            # Time passes: the retry is due now.
            Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
            delivery_attempt(delivery_id=delivery.pk)
            delivery.refresh_from_db()
        self.assertEqual((delivery.status, delivery.attempts), ("dead", 8))

        # Retry n waits within [c/2, c], c = min(max, base * multiplier**(n-1)): 1, 10, 100, then the 700 cap.
        ceilings = [1, 10, 100, 700, 700, 700, 700]
        for n, (delay, ceiling) in enumerate(zip(delays, ceilings, strict=True), start=1):
            self.assertGreaterEqual(delay, ceiling / 2 - 0.05, f"retry {n}: {delay}")
            self.assertLessEqual(delay, ceiling + 0.05, f"retry {n}: {delay} above its ceiling {ceiling}")


class RetryAfterTests(OutboundTestCase):
    POLICY = {"retry": {"max_retries": 3, "base_delay_seconds": 0.02, "max_delay_seconds": 60}}

    def wait_after(self, status: int, retry_after: str) -> float:
        self.server.responses = [(status, {"error": "later"}, {"Retry-After": retry_after})]
        self.open_room(self.POLICY)
        delivery = self.delivery_for(self.send("hello")["event_id"])
        self.assertEqual(delivery.status, "pending")
        self.assertEqual(delivery.attempts, 1)
        return seconds_until(delivery.next_attempt_at)

    def test_delay_seconds_form_is_honoured(self) -> None:
        wait = self.wait_after(429, "45")
        self.assertGreater(wait, 43)
        self.assertLessEqual(wait, 45)

    def test_http_date_form_is_honoured(self) -> None:
        wait = self.wait_after(503, formatdate(time.time() + 40, usegmt=True))
        # The date has whole seconds: 39-40 s from when it was written.
        self.assertGreater(wait, 37)
        self.assertLessEqual(wait, 40.5)

    def test_delay_seconds_are_capped_at_max_delay(self) -> None:
        wait = self.wait_after(429, "3600")
        self.assertGreater(wait, 58)
        self.assertLessEqual(wait, 60)

    def test_http_date_is_capped_at_max_delay(self) -> None:
        wait = self.wait_after(503, formatdate(time.time() + 7200, usegmt=True))
        self.assertGreater(wait, 58)
        self.assertLessEqual(wait, 60)

    def test_a_date_in_the_past_means_retry_now(self) -> None:
        self.server.responses = [(503, {}, {"Retry-After": formatdate(time.time() - 600, usegmt=True)})]
        self.open_room(self.POLICY)

        delivery = self.delivery_for(self.send("hello")["event_id"])

        # No wait: the retry ran at once (inline task mode runs a zero countdown immediately).
        self.assertEqual((delivery.status, delivery.attempts), ("sent", 2))

    def test_a_malformed_retry_after_falls_back_to_backoff(self) -> None:
        wait = self.wait_after(503, "soon-ish")
        self.assertLessEqual(wait, 0.02)


class CircuitBreakerTests(OutboundTestCase):
    def test_threshold_3_opens_on_the_third_retryable_failure_and_holds_sends(self) -> None:
        config = {"retry": NO_RETRY, "circuit_breaker": {"failure_threshold": 3, "recovery_timeout_seconds": 90}}
        self.server.default = (503, {"error": "overloaded"}, {})
        self.open_room(config)

        for i in range(1, 4):
            self.assertEqual(breaker_of("hook-out", config).state, "closed", f"open after only {i - 1} failures")
            self.assertEqual(self.delivery_for(self.send(f"m{i}")["event_id"]).status, "dead")
            self.assertEqual(breaker_of("hook-out", config).failures, i)
        state = breaker_of("hook-out", config)
        self.assertEqual(state.state, "open")
        self.assertEqual(len(self.server.requests), 3)

        held = self.delivery_for(self.send("while open")["event_id"])

        self.assertEqual(len(self.server.requests), 3, "an open breaker must not call the receiver")
        self.assertEqual((held.status, held.attempts, held.last_error), ("pending", 0, "circuit open"))
        # It comes back when the configured recovery timeout is over, not before.
        self.assertGreater(seconds_until(held.next_attempt_at), 85)
        self.assertLessEqual(seconds_until(held.next_attempt_at), 90)

    def test_default_threshold_is_five(self) -> None:
        config = {"retry": NO_RETRY}
        self.server.default = (500, {}, {})
        self.open_room(config)
        for i in range(4):
            self.send(f"m{i}")
        self.assertEqual(breaker_of("hook-out", config).state, "closed")
        self.send("fifth")
        self.assertEqual(breaker_of("hook-out", config).state, "open")

    def test_a_400_for_one_recipient_never_opens_it(self) -> None:
        config = {"retry": {"max_retries": 3}, "circuit_breaker": {"failure_threshold": 3, "recovery_timeout_seconds": 60}}

        def answer(req: RecordedRequest) -> tuple[int, dict, dict]:
            if req.json()["recipient"] == "bad":
                return 400, {"error": "no such user"}, {}
            return 200, {"id": "ok"}, {}

        self.server.handler = answer
        self.open_room(config, addresses=("good", "bad"))

        for i in range(10):
            self.send(f"m{i}")

        statuses = {d.recipient: set() for d in Delivery.objects.filter(channel_id="hook-out")}
        for d in Delivery.objects.filter(channel_id="hook-out"):
            statuses[d.recipient].add((d.status, d.attempts))
        self.assertEqual(statuses["bad"], {("failed", 1)}, "a permanent 4xx fails that delivery, no retry")
        self.assertEqual(statuses["good"], {("sent", 1)})
        self.assertEqual(breaker_of("hook-out", config), resilience.BreakerState("closed", 0))
        self.assertEqual(len(self.server.requests), 20)

    def test_a_400_neither_counts_nor_resets_the_sick_failures(self) -> None:
        config = {"retry": NO_RETRY, "circuit_breaker": {"failure_threshold": 3, "recovery_timeout_seconds": 60}}
        self.server.responses = [(502, {}, {}), (503, {}, {}), (400, {}, {}), (404, {}, {}), (422, {}, {}), (500, {}, {})]
        self.open_room(config)

        for i in range(5):
            self.send(f"m{i}")
        self.assertEqual(breaker_of("hook-out", config), resilience.BreakerState("closed", 2))
        self.send("third sick one")

        self.assertEqual(breaker_of("hook-out", config).state, "open")

    def test_429_and_408_count(self) -> None:
        config = {"retry": NO_RETRY, "circuit_breaker": {"failure_threshold": 2, "recovery_timeout_seconds": 60}}
        self.server.responses = [(429, {}, {}), (408, {}, {})]
        self.open_room(config)
        self.send("throttled")
        self.assertEqual(breaker_of("hook-out", config), resilience.BreakerState("closed", 1))
        self.send("timed out")
        self.assertEqual(breaker_of("hook-out", config).state, "open")

    def test_network_errors_count(self) -> None:
        config = {"retry": NO_RETRY, "circuit_breaker": {"failure_threshold": 1, "recovery_timeout_seconds": 60}}
        self.open_room({"url": f"http://127.0.0.1:{_closed_port()}/hook", **config})
        self.send("to nowhere")
        self.assertEqual(breaker_of("hook-out", config).state, "open")

    def test_a_success_resets_the_count(self) -> None:
        config = {"retry": NO_RETRY, "circuit_breaker": {"failure_threshold": 3, "recovery_timeout_seconds": 60}}
        self.server.responses = [(500, {}, {}), (500, {}, {}), (200, {"id": "ok"}, {}), (500, {}, {}), (500, {}, {})]
        self.open_room(config)
        for i in range(5):
            self.send(f"m{i}")
        self.assertEqual(breaker_of("hook-out", config), resilience.BreakerState("closed", 2))

    def test_the_breaker_is_per_channel(self) -> None:
        policy = CircuitBreakerPolicy(failure_threshold=1, recovery_timeout_seconds=60)
        resilience.breaker_record("other-channel", policy, "failure")
        self.open_room()

        self.assertEqual(self.delivery_for(self.send("hello")["event_id"]).status, "sent")
        self.assertEqual(resilience.breaker_state("other-channel", policy).state, "open")

    def test_after_the_timeout_one_probe_closes_it_and_the_held_sends_go(self) -> None:
        config = {"retry": NO_RETRY, "circuit_breaker": {"failure_threshold": 2, "recovery_timeout_seconds": 0.3}}
        self.server.responses = [(500, {}, {}), (500, {}, {})]
        self.open_room(config, addresses=("a", "b", "c"))
        self.send("two fail, the third is held")
        self.assertEqual(breaker_of("hook-out", config).state, "open")
        held = Delivery.objects.get(channel_id="hook-out", status="pending")
        self.assertEqual(held.last_error, "circuit open")

        wait_for(lambda: breaker_of("hook-out", config).state == "half-open", what="half-open")
        self.send("after the timeout")  # three deliveries: the first is the probe, then the breaker is closed

        self.assertEqual(breaker_of("hook-out", config), resilience.BreakerState("closed", 0))
        self.assertEqual(run_until_settled(held.pk).status, "sent")
        self.assertEqual(len(self.server.requests), 6)

    def test_a_failed_probe_reopens_it_for_another_timeout(self) -> None:
        config = {"retry": NO_RETRY, "circuit_breaker": {"failure_threshold": 1, "recovery_timeout_seconds": 0.5}}
        self.server.default = (503, {}, {})
        self.open_room(config)
        self.send("opens it")
        first_open = breaker_of("hook-out", config).opened_at
        wait_for(lambda: breaker_of("hook-out", config).state == "half-open", what="half-open")

        self.send("the probe fails")

        state = breaker_of("hook-out", config)
        self.assertEqual(state.state, "open")
        self.assertGreater(state.opened_at, first_open)
        held = self.delivery_for(self.send("held again")["event_id"])
        self.assertEqual((held.status, held.last_error), ("pending", "circuit open"))
        self.assertEqual(len(self.server.requests), 2)

    def test_a_probe_refused_with_a_4xx_hands_the_probe_on(self) -> None:
        config = {"retry": NO_RETRY, "circuit_breaker": {"failure_threshold": 1, "recovery_timeout_seconds": 0.3}}
        self.server.responses = [(500, {}, {}), (400, {}, {})]
        self.open_room(config)
        self.send("opens it")
        wait_for(lambda: breaker_of("hook-out", config).state == "half-open", what="half-open")

        self.assertEqual(self.delivery_for(self.send("the probe, refused")["event_id"]).status, "failed")
        state = breaker_of("hook-out", config)
        self.assertEqual((state.state, state.probe_in_flight), ("half-open", False))
        self.assertEqual(self.delivery_for(self.send("the next probe")["event_id"]).status, "sent")
        self.assertEqual(breaker_of("hook-out", config).state, "closed")

    def test_a_probe_held_back_by_the_rate_limit_is_handed_on(self) -> None:
        config = {
            "retry": NO_RETRY,
            "circuit_breaker": {"failure_threshold": 1, "recovery_timeout_seconds": 0.3},
            "rate_limit": {"per_minute": 1},
        }
        self.server.default = (503, {}, {})
        self.open_room(config)
        self.send("opens the breaker and uses the minute's one send")
        wait_for(lambda: breaker_of("hook-out", config).state == "half-open", what="half-open")

        held = self.delivery_for(self.send("gets the probe, then waits for the window")["event_id"])

        self.assertEqual((held.status, held.last_error), ("pending", "rate limited"))
        state = breaker_of("hook-out", config)
        self.assertEqual((state.state, state.probe_in_flight), ("half-open", False), "the probe is free for the next send")
        self.assertEqual(len(self.server.requests), 1)


class RateLimitTests(OutboundTestCase):
    def test_a_per_minute_limit_of_30_admits_30_then_holds(self) -> None:
        self.open_room({"rate_limit": {"per_minute": 30}})
        started = timezone.now()

        event_ids = [self.send(f"m{i}")["event_id"] for i in range(31)]

        self.assertEqual(len(self.server.requests), 30)
        held = self.delivery_for(event_ids[-1])
        self.assertEqual((held.status, held.attempts, held.last_error), ("pending", 0, "rate limited"))
        # The window frees its first slot a minute after the first send.
        self.assertLessEqual(held.next_attempt_at, started + timedelta(seconds=60.5))
        self.assertGreater(seconds_until(held.next_attempt_at), 45)
        self.assertEqual(sweep_outbox(), 0)
        self.assertEqual(delivery_attempt(delivery_id=held.pk), "skipped", "not due: nothing is sent")
        self.assertEqual(len(self.server.requests), 30)

    def test_a_per_hour_limit_holds_for_the_hour(self) -> None:
        self.open_room({"rate_limit": {"per_hour": 2}})
        event_ids = [self.send(f"m{i}")["event_id"] for i in range(3)]
        self.assertEqual(len(self.server.requests), 2)
        wait = seconds_until(self.delivery_for(event_ids[-1]).next_attempt_at)
        self.assertGreater(wait, 3500)
        self.assertLessEqual(wait, 3600)

    def test_every_limit_that_is_set_applies(self) -> None:
        self.open_room({"rate_limit": {"per_second": 10, "per_minute": 3}})
        event_ids = [self.send(f"m{i}")["event_id"] for i in range(4)]
        self.assertEqual(len(self.server.requests), 3, "the per-minute limit holds the fourth")
        self.assertGreater(seconds_until(self.delivery_for(event_ids[-1]).next_attempt_at), 50)

    def test_a_limit_below_one_per_second_spaces_the_sends(self) -> None:
        arrivals: list[float] = []

        def record(req: RecordedRequest) -> tuple[int, dict, dict]:
            arrivals.append(time.monotonic())
            return 200, {"id": f"ok-{len(arrivals)}"}, {}

        self.server.handler = record
        self.open_room({"rate_limit": {"per_second": 0.5}}, addresses=("a", "b", "c"))

        sent = self.send("three recipients, one send per 2 s")

        self.assertEqual(len(arrivals), 1)
        held = list(Delivery.objects.filter(event_id=sent["event_id"], status="pending"))
        self.assertEqual(len(held), 2)
        for d in held:
            self.assertEqual((d.attempts, d.last_error), (0, "rate limited"))
            self.assertGreater(seconds_until(d.next_attempt_at), 1.5)
            self.assertLessEqual(seconds_until(d.next_attempt_at), 2.0)
        for d in held:
            self.assertEqual(run_until_settled(d.pk, timeout=10).status, "sent")
        self.assertEqual(len(arrivals), 3)
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
        self.assertTrue(all(g >= 1.95 for g in gaps), gaps)

    def test_without_a_limit_nothing_waits(self) -> None:
        self.open_room(addresses=tuple(f"r{i}" for i in range(20)))
        self.send("to twenty")
        self.assertEqual(len(self.server.requests), 20)
        self.assertFalse(Delivery.objects.filter(status="pending").exists())


class _ThreadedBreakerCase(TransactionTestCase):
    def setUp(self) -> None:
        resilience.reset_all()
        self.addCleanup(resilience.reset_all)


class ConcurrentProbeTests(_ThreadedBreakerCase):
    THREADS = 16

    def test_exactly_one_of_many_concurrent_callers_gets_the_probe(self) -> None:
        policy = CircuitBreakerPolicy(failure_threshold=1, recovery_timeout_seconds=0.05)
        channel_id = f"ch-{uuid.uuid4().hex[:8]}"
        barrier = threading.Barrier(self.THREADS)
        for round_no in range(10):
            resilience.breaker_record(channel_id, policy, "failure")  # opens (or re-opens) it
            wait_for(lambda: resilience.breaker_state(channel_id, policy).state == "half-open", what="half-open")
            gates: list[resilience.BreakerGate] = []

            def ask(into: list[resilience.BreakerGate]) -> None:
                barrier.wait()
                into.append(resilience.breaker_allow(channel_id, policy))

            threads = [threading.Thread(target=ask, args=(gates,)) for _ in range(self.THREADS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            probes = [g for g in gates if g.allowed]
            self.assertEqual(len(gates), self.THREADS)
            self.assertEqual(len(probes), 1, f"round {round_no}: {len(probes)} probes")
            self.assertTrue(probes[0].probe_token)
            refused = {g.reason for g in gates if not g.allowed}
            self.assertEqual(refused, {"circuit half-open, probe in flight"})
            # The probe fails: open again for the next round.
            resilience.breaker_record(channel_id, policy, "failure", probe_token=probes[0].probe_token)
            self.assertEqual(resilience.breaker_state(channel_id, policy).state, "open")

    def test_concurrent_delivery_workers_send_exactly_one_probe(self) -> None:
        n = 8
        gate_open = threading.Event()
        arrived = threading.Event()

        def hold_the_probe(req: RecordedRequest) -> tuple[int, dict, dict]:
            arrived.set()
            gate_open.wait(10)  # the probe stays in flight until every other worker has tried
            return 200, {"id": "probe"}, {}

        server = FakeHTTPServer(default=(503, {}, {}))
        server.__enter__()
        self.addCleanup(server.__exit__, None, None, None)
        config = {
            "url": server.url + "/hook",
            "retry": NO_RETRY,
            "circuit_breaker": {"failure_threshold": 1, "recovery_timeout_seconds": 2},
        }
        deliveries = _held_deliveries(self, config, n)
        server.requests.clear()
        server.handler = hold_the_probe
        wait_for(lambda: breaker_of("partner", config).state == "half-open", what="half-open")
        Delivery.objects.filter(pk__in=deliveries).update(next_attempt_at=None)

        results: dict[int, str] = {}
        barrier = threading.Barrier(n)

        def worker(delivery_id: int) -> None:
            try:
                barrier.wait()
                results[delivery_id] = delivery_attempt(delivery_id=delivery_id)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=worker, args=(d,)) for d in deliveries]
        for t in threads:
            t.start()
        wait_for(arrived.is_set, what="the probe to arrive")
        wait_for(lambda: len(results) == n - 1, what="the other workers to give up")

        self.assertEqual(len(server.requests), 1, "exactly one probe while half-open")
        gate_open.set()
        for t in threads:
            t.join(10)
        self.assertEqual(sorted(results.values()), ["pending"] * (n - 1) + ["sent"])
        self.assertEqual(breaker_of("partner", config).state, "closed")
        self.assertEqual(
            set(Delivery.objects.filter(pk__in=deliveries, status="pending").values_list("last_error", flat=True)),
            {"circuit half-open, probe in flight"},
        )


def _held_deliveries(testcase: TransactionTestCase, config: dict, n: int) -> list[int]:
    """``n`` deliveries on channel ``partner`` held by its open breaker (one 503 opened it)."""
    from rooms.inbound import InboundMessage, process_inbound
    from rooms.models import ChannelBinding, Room
    from rooms.services import channel_attach

    out = make_channel("partner", config=config)
    src = make_channel("src", channel_type="sms")
    room = Room.objects.create()
    ChannelBinding.objects.create(room=room, channel=src, address="+15550111")
    ChannelBinding.objects.create(room=room, channel=out, address="user-0")
    process_inbound(InboundMessage(channel_id=src.id, sender="+15550111", text="opens the breaker", provider_message_id="m0"))
    testcase.assertEqual(breaker_of("partner", config).state, "open")
    for i in range(1, n):
        channel_attach(room_id=room.pk, channel_id=out.id, address=f"user-{i}")
    process_inbound(InboundMessage(channel_id=src.id, sender="+15550111", text="held", provider_message_id="m1"))
    held = list(Delivery.objects.filter(channel=out, status="pending", last_error="circuit open").values_list("pk", flat=True))
    testcase.assertEqual(len(held), n)
    return held


PROBE_WORKER = """
import os, sys, time, pathlib
import django
django.setup()
from channels_app.services import delivery_attempt
go = pathlib.Path(sys.argv[2])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
print("result", delivery_attempt(delivery_id=int(sys.argv[1])), flush=True)
"""


@unittest.skipUnless(settings.REDIS_URL, "needs REDIS_URL: the breaker is shared across processes only through Redis")
class ProbeAcrossProcessesTests(_ThreadedBreakerCase):
    def test_worker_processes_send_exactly_one_probe(self) -> None:
        import tempfile
        from pathlib import Path

        n = 4
        gate_open = threading.Event()

        def hold_the_probe(req: RecordedRequest) -> tuple[int, dict, dict]:
            gate_open.wait(20)
            return 200, {"id": "probe"}, {}

        server = FakeHTTPServer(default=(503, {}, {}))
        server.__enter__()
        self.addCleanup(server.__exit__, None, None, None)
        config = {
            "url": server.url + "/hook",
            "retry": NO_RETRY,
            "circuit_breaker": {"failure_threshold": 1, "recovery_timeout_seconds": 2},
        }
        deliveries = _held_deliveries(self, config, n)
        server.requests.clear()
        server.handler = hold_the_probe
        wait_for(lambda: breaker_of("partner", config).state == "half-open", what="half-open")
        Delivery.objects.filter(pk__in=deliveries).update(next_attempt_at=None)
        go = Path(tempfile.mkdtemp()) / "go"
        children = [
            start_child(self, [str(VENV_BIN / "python"), "-c", PROBE_WORKER, str(d), str(go)], child_env(), name=f"probe-{d}")
            for d in deliveries
        ]
        wait_for(lambda: all("ready" in c.output() for c in children), timeout=60, what="workers to start")

        go.touch()
        wait_for(lambda: len(server.requests) == 1, what="the probe")
        wait_for(lambda: sum("result pending" in c.output() for c in children) == n - 1, timeout=20, what="the others")

        self.assertEqual(len(server.requests), 1, "exactly one probe across worker processes")
        gate_open.set()
        wait_for(lambda: any("result sent" in c.output() for c in children), timeout=20, what="the probe's result")
        self.assertEqual(breaker_of("partner", config).state, "closed")
        self.assertEqual(Delivery.objects.filter(pk__in=deliveries, status="sent").count(), 1)
