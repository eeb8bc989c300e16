"""Delivery that is proven: real Celery workers, real HTTP, a fake Twilio that fails on purpose.

Scaled mode only (PostgreSQL + Redis, ``.ci/run``'s second pass). Each test
starts its own ``celery worker`` processes (and ``celery beat``, or a Daphne
server, where it needs them) on the test database, enqueues through the broker
as the project does, waits for the database to show the outcome (polling
against a deadline), and stops them at clean-up. The vendor is
``FaultyTwilio``: the fake Twilio API, checked as Twilio checks requests, that
fails in the ways the tests set and records the idempotency key of every send.

What each test proves:

- a thousand copies of one signed Twilio webhook, sixteen at a time, store one
  event and plan one delivery per bound target, and each target's vendor gets
  one message;
- a vendor failing every other request: every delivery arrives, one 2xx per
  idempotency key, and every retry carried its delivery's key;
- a vendor down: the breaker opens (one probe per recovery timeout), the
  deliveries become dead letters after their retries, and an operator's bulk
  retry in the admin delivers each once when the vendor is back;
- a worker killed (SIGKILL) while the vendor holds its request: the delivery
  completes, and the vendor creates one message. It is the outbox sweeper
  that recovers it: for a whole worker, the broker never gives the message
  back within the test (it is still unacknowledged in Redis at the end); for a
  pool process, ``acks_late`` + ``reject_on_worker_lost`` do give it back at
  once, and that run finds the row claimed and sends nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import unittest
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import httpx
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import TransactionTestCase, override_settings

from channels_app import resilience
from channels_app.providers import delivery_idempotency_key
from channels_app.tasks import deliver_event_task
from rooms.enums import DeliveryStatus
from rooms.inbound import InboundMessage, process_inbound
from rooms.models import AuditEntry, Channel, ChannelBinding, Delivery, Room, RoomEvent
from tests.channels_app.fakes.twilio import fixture, twilio_signature
from tests.concurrency.celery_workers import (
    SKIP_REASON,
    pool_processes,
    purge_broker,
    scaled_mode_available,
    start_beat,
    start_worker,
    unacked_tasks,
    wait_ready,
    wait_until,
    worker_env,
)
from tests.concurrency.faulty_twilio import FaultyTwilio
from tests.concurrency.processes import quiet_logger, start_daphnes
from tests.console.helpers import csrf_post, logged_in, operator
from tests.support import FakeHTTPServer, make_channel

ACCOUNT = "AC00000000000000000000000000000001"  # the inbound fixture's AccountSid
TOKEN = "9b1f0c2d3e4a5b6c7d8e9f0a1b2c3d4e"
NUMBER = "+15558675310"  # the channel's number: "To" of the inbound fixture
CUSTOMER = "+14017122661"  # "From" of the inbound fixture
RECIPIENTS = ["+15550100001", "+15550100002", "+15550100003", "+15550100004"]
BASE = "https://roomkit.example.test"  # PUBLIC_BASE_URL: what Twilio signs

SETTLED = (DeliveryStatus.QUEUED, DeliveryStatus.SENT, DeliveryStatus.DEAD, DeliveryStatus.FAILED)
# Quick retries: the tests wait for real backoff, so keep it short.
FAST_RETRY = {"base_delay_seconds": 0.05, "max_delay_seconds": 0.2, "multiplier": 2.0}


@unittest.skipUnless(scaled_mode_available(), SKIP_REASON)
class DeliveryFaultsTestCase(TransactionTestCase):
    def setUp(self) -> None:
        quiet_logger(self, "httpx")
        # Clean-ups run last-in first-out: the broker is purged after the workers (added later) stop.
        purge_broker()
        self.addCleanup(purge_broker)
        resilience.reset_all()
        self.suffix = uuid.uuid4().hex[:8]  # breaker and rate state live in Redis: ids unique per run
        self.vendor = FaultyTwilio(ACCOUNT, TOKEN)
        self.vendor.__enter__()
        self.addCleanup(self.vendor.__exit__, None, None, None)
        self.addCleanup(self.vendor.release)  # a held request must not outlive the test
        self.tmp = Path(tempfile.mkdtemp(prefix="rk-faults-"))
        self.addCleanup(shutil.rmtree, self.tmp, True)

    # --- set-up helpers ---

    def twilio_channel(self, name: str, **config: object) -> Channel:
        return make_channel(
            f"{name}-{self.suffix}",
            channel_type="sms",
            provider="twilio",
            config={"account_sid": ACCOUNT, "from": NUMBER, "api_base": self.vendor.url, **config},
            secrets={"auth_token": TOKEN},
        )

    def room_to(self, target: Channel, recipients: list[str]) -> tuple[Channel, Room]:
        """A room where a customer on a plain source channel talks to ``recipients`` on ``target``."""
        source = make_channel(f"src-{self.suffix}", channel_type="sms", secrets={"signing_secret": "unused"})
        room = Room.objects.create()
        ChannelBinding.objects.create(room=room, channel=source, address=CUSTOMER)
        for address in recipients:
            ChannelBinding.objects.create(room=room, channel=target, address=address)
        return source, room

    def say(self, source: Channel, count: int) -> list[Delivery]:
        """``count`` messages into the room; their deliveries go to the broker, as in production."""
        event_ids = []
        with override_settings(ROOMKIT_TASK_MODE="celery"):
            for i in range(count):
                result = process_inbound(
                    InboundMessage(channel_id=source.id, sender=CUSTOMER, text=f"message {i}", provider_message_id=f"m{i}")
                )
                self.assertEqual(result.status, "stored")
                event_ids.append(result.event_id)
        return list(Delivery.objects.filter(event_id__in=event_ids).order_by("pk"))

    def workers(self, n: int = 2, **env: str) -> list:
        found = [start_worker(self, f"w{i}", env=worker_env(**env)) for i in range(n)]
        wait_ready(*found)
        return found

    def settled(self, deliveries: list[Delivery], statuses: tuple[str, ...] = SETTLED) -> bool:
        ids = [d.pk for d in deliveries]
        return Delivery.objects.filter(pk__in=ids, status__in=statuses).count() == len(ids)

    def rows(self, deliveries: list[Delivery]) -> str:
        """The deliveries as the database has them, and what the vendor saw (for a failure's message)."""
        found = Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).order_by("pk")
        lines = [f"{d.pk}: {d.status} attempts={d.attempts} next={d.next_attempt_at} {d.last_error[:80]}" for d in found]
        return "\n".join([*lines, f"vendor: {[(round(a.at, 2), a.key[-6:], a.status) for a in self.vendor.attempts()]}"])

    def assertOneMessagePerKey(self, deliveries: list[Delivery]) -> None:
        """Each delivery's key got exactly one 2xx from the vendor and one created message; no other key did."""
        keys = {delivery_idempotency_key(d): d for d in Delivery.objects.filter(pk__in=[d.pk for d in deliveries])}
        ok = [a for a in self.vendor.attempts() if 200 <= a.status < 300]
        self.assertEqual(sorted(a.key for a in ok if not a.replayed), sorted(keys), "one fresh 2xx per delivery key")
        self.assertEqual(dict(self.vendor.created), dict.fromkeys(keys, 1), "one message created per delivery")
        for key, delivery in keys.items():
            self.assertEqual(delivery.status, DeliveryStatus.QUEUED, (delivery.pk, delivery.last_error))
            created = next(a.sid for a in ok if a.key == key and not a.replayed)
            self.assertEqual(delivery.provider_message_id, created)

    # --- 1: a storm of copies of one webhook ---

    def test_a_thousand_copies_of_one_signed_webhook_store_one_event_and_one_delivery_per_target(self) -> None:
        inbound = self.twilio_channel("tw-in")
        outbound = self.twilio_channel("tw-out")
        partner_vendor = FakeHTTPServer(default=(200, {"id": "partner-77"}, {}))
        partner_vendor.__enter__()
        self.addCleanup(partner_vendor.__exit__, None, None, None)
        partner = make_channel(
            f"partner-{self.suffix}", config={"url": partner_vendor.url + "/inbox"}, secrets={"signing_secret": "p-secret"}
        )
        room = Room.objects.create()
        ChannelBinding.objects.create(room=room, channel=inbound, address=CUSTOMER)
        for address in RECIPIENTS[:2]:
            ChannelBinding.objects.create(room=room, channel=outbound, address=address)
        ChannelBinding.objects.create(room=room, channel=partner, address="partner-user-9")

        [(server, port)] = start_daphnes(self, 1, ROOMKIT_TASK_MODE="celery", PUBLIC_BASE_URL=BASE)
        workers = self.workers(2)
        path = f"/webhooks/{inbound.id}/"
        form = {**fixture("inbound_sms.json"), "AccountSid": ACCOUNT, "To": NUMBER, "From": CUSTOMER}
        body = urlencode(form)
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": twilio_signature(BASE + path, form, TOKEN),
        }
        url = f"http://127.0.0.1:{port}{path}"

        copies, at_once = 1000, 16
        with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=at_once)) as client:
            forged = client.post(url, content=body, headers={**headers, "X-Twilio-Signature": "AAAA"})
            self.assertEqual(forged.status_code, 403, forged.text)
            with ThreadPoolExecutor(max_workers=at_once) as pool:
                answers = list(pool.map(lambda _: client.post(url, content=body, headers=headers), range(copies)))

        self.assertEqual([r.status_code for r in answers], [200] * copies, answers[0].text)
        self.assertEqual({r.headers["Content-Type"].split(";")[0] for r in answers}, {"text/xml"})
        self.assertEqual(RoomEvent.objects.count(), 1)
        event = RoomEvent.objects.get()
        self.assertEqual((event.room_id, event.seq, event.provider_message_id), (room.id, 1, form["MessageSid"]))
        deliveries = list(Delivery.objects.order_by("pk"))
        self.assertEqual(
            sorted((d.channel_id, d.recipient) for d in deliveries),
            sorted([(outbound.id, RECIPIENTS[0]), (outbound.id, RECIPIENTS[1]), (partner.id, "partner-user-9")]),
        )
        self.assertEqual({d.event_id for d in deliveries}, {event.id})

        # The workers send each of them once.
        wait_until(
            lambda: self.settled(deliveries), "the three deliveries settle", [server, *workers], 30, lambda: self.rows(deliveries)
        )
        self.assertOneMessagePerKey([d for d in deliveries if d.channel_id == outbound.id])
        self.assertEqual(sorted(r.field("To") for r in self.vendor.message_requests()), RECIPIENTS[:2])
        self.assertEqual(len(partner_vendor.requests), 1)
        self.assertEqual(Delivery.objects.get(channel=partner).status, DeliveryStatus.SENT)

    # --- 2: a vendor failing every other request ---

    def test_a_vendor_failing_every_other_request_gets_each_message_once(self) -> None:
        # The breaker is not what this test is about: half the answers fail, so it must not open.
        target = self.twilio_channel(
            "tw-flaky", retry={"max_retries": 20, **FAST_RETRY}, circuit_breaker={"failure_threshold": 10_000}
        )
        source, _ = self.room_to(target, RECIPIENTS[:1])
        self.vendor.mode = "alternate"
        workers = self.workers(2)

        deliveries = self.say(source, 40)
        wait_until(lambda: self.settled(deliveries), "40 deliveries settle", workers, 60, lambda: self.rows(deliveries))

        attempts = self.vendor.attempts()
        # Strict alternation, and every 500 is followed by a retry of its delivery: the last
        # request is a 2xx, so there are exactly as many 500s as deliveries.
        self.assertEqual([a.status for a in attempts], [500, 201] * len(deliveries))
        self.assertOneMessagePerKey(deliveries)
        by_key = self.vendor.by_key()
        for delivery in Delivery.objects.filter(pk__in=[d.pk for d in deliveries]):
            sent = by_key[delivery_idempotency_key(delivery)]
            # Every attempt the row counts reached the vendor under the delivery's one key, and only the last succeeded.
            self.assertEqual(len(sent), delivery.attempts, delivery.pk)
            self.assertEqual([a.status for a in sent], [500] * (delivery.attempts - 1) + [201])
        self.assertFalse(any(a.replayed for a in attempts), "no key was sent again after its 2xx")

    # --- 3: a vendor down, dead letters, the operator's retry ---

    def test_a_vendor_down_opens_the_breaker_and_its_dead_letters_are_retried_from_the_admin(self) -> None:
        recovery = 0.5
        target = self.twilio_channel(
            "tw-down",
            retry={"max_retries": 2, **FAST_RETRY},
            circuit_breaker={"failure_threshold": 3, "recovery_timeout_seconds": recovery},
        )
        source, _ = self.room_to(target, RECIPIENTS[:1])
        self.vendor.mode = "down"
        workers = self.workers(2)

        deliveries = self.say(source, 4)
        wait_until(
            lambda: self.settled(deliveries, (DeliveryStatus.DEAD,)), "4 dead letters", workers, 60, lambda: self.rows(deliveries)
        )

        dead = list(Delivery.objects.filter(pk__in=[d.pk for d in deliveries]))
        for delivery in dead:
            self.assertEqual((delivery.status, delivery.attempts, delivery.error_code), (DeliveryStatus.DEAD, 3, "20503"))
            self.assertIn("Twilio HTTP 503", delivery.last_error)
        attempts = self.vendor.attempts()
        # A deferral by the open breaker is not an attempt: the vendor saw exactly 3 per delivery.
        self.assertEqual(len(attempts), 3 * len(deliveries))
        self.assertEqual({a.status for a in attempts}, {503})
        # The breaker opened at the 3rd failure it was told of: by then at most 6 sends had gone
        # (2 failures told, and their retries, plus up to 4 in flight: 2 workers × 2 threads). From
        # then on one probe at a time, each a recovery timeout after the last one failed. Without
        # it the retries would come every 50–200 ms.
        gaps = [b.at - a.at for a, b in zip(attempts, attempts[1:], strict=False)]
        self.assertGreaterEqual(min(gaps[6:]), recovery * 0.8, gaps)

        # The vendor is back; an operator retries every dead letter at once from the admin.
        self.vendor.mode = "ok"
        client = logged_in(operator())
        with override_settings(ROOMKIT_TASK_MODE="celery"):
            response = csrf_post(
                client, "/admin/rooms/delivery/", {"action": "retry_deliveries", ACTION_CHECKBOX_NAME: [d.pk for d in dead]}
            )
        self.assertEqual(response.status_code, 302, response.content[:500])
        self.assertEqual(AuditEntry.objects.filter(action="retry_delivery").count(), len(dead))

        wait_until(
            lambda: self.settled(deliveries, (DeliveryStatus.QUEUED,)),
            "retried deliveries sent",
            workers,
            30,
            lambda: self.rows(deliveries),
        )
        self.assertOneMessagePerKey(deliveries)
        for delivery in Delivery.objects.filter(pk__in=[d.pk for d in deliveries]):
            self.assertEqual(delivery.attempts, 1)  # the operator's retry starts the count again
            # Its 3 failed attempts and the one that worked went under the same key.
            self.assertEqual([a.status for a in self.vendor.by_key()[delivery_idempotency_key(delivery)]], [503, 503, 503, 201])

    # --- 4: a worker killed mid-send ---

    def kill_mid_send(self, pool: str) -> tuple[list[Delivery], Delivery, object]:
        """Deliveries to a vendor that holds their requests; returns them, the one held and its worker."""
        target = self.twilio_channel("tw-kill", retry={"max_retries": 4, **FAST_RETRY})
        source, _ = self.room_to(target, RECIPIENTS[:1])
        # Seconds a row may stay 'sending' before the sweeper calls its worker dead; sweeps every second.
        env = worker_env(ROOMKIT_DELIVERY_STUCK_SECONDS="2", ROOMKIT_OUTBOX_SWEEP_SECONDS="1")
        self.vendor.mode = "hold"
        # One send at a time: the held request is the only one in flight when the worker dies.
        victim = start_worker(self, "victim", pool=pool, concurrency=1, env=env)
        wait_ready(victim)
        deliveries = self.say(source, 3)
        wait_until(self.vendor.held.is_set, "the vendor holds a request", [victim], 30)
        held = Delivery.objects.get(status=DeliveryStatus.SENDING)
        self.assertEqual(held.attempts, 1)
        self.assertEqual(len(self.vendor.message_requests()), 0, "the held request is not answered yet")
        return deliveries, held, victim

    def test_a_worker_killed_mid_send_is_recovered_by_the_sweeper_and_the_vendor_creates_one_message(self) -> None:
        deliveries, held, victim = self.kill_mid_send("threads")

        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        # The vendor now goes on with what the dead worker sent: it has the message.
        self.vendor.release()
        wait_until(lambda: self.vendor.created.total() == 1, "the vendor creates the held message", [], 10)
        self.assertEqual(Delivery.objects.get(pk=held.pk).status, DeliveryStatus.SENDING)

        env = worker_env(ROOMKIT_DELIVERY_STUCK_SECONDS="2", ROOMKIT_OUTBOX_SWEEP_SECONDS="1")
        survivor = start_worker(self, "survivor", env=env)
        beat = start_beat(self, self.tmp, env=env)
        wait_until(
            lambda: self.settled(deliveries), "every delivery completes", [survivor, beat], 40, lambda: self.rows(deliveries)
        )

        self.assertOneMessagePerKey(deliveries)
        held.refresh_from_db()
        self.assertEqual(held.attempts, 2, "the killed attempt counts, and one more")
        attempts = self.vendor.by_key()[delivery_idempotency_key(held)]
        # The vendor saw the key twice: the killed send, which created the message, and the
        # second, which it recognised (so no second message) and answered with the first's sid.
        self.assertEqual([(a.status, a.replayed) for a in attempts], [(201, False), (201, True)])
        self.assertEqual(attempts[0].sid, attempts[1].sid)
        self.assertEqual(held.provider_message_id, attempts[0].sid)
        for delivery in Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).exclude(pk=held.pk):
            # Taken by the dead worker but never started: pending rows the sweeper re-enqueued.
            self.assertEqual(delivery.attempts, 1)
        # Proof of who recovered them: the broker never gave the dead worker's messages back
        # (still unacknowledged in Redis, invisible for ROOMKIT_CELERY_VISIBILITY_TIMEOUT); the
        # sweep released the stuck row.
        self.assertIn([held.pk], [args for _, args in unacked_tasks(deliver_event_task.name)])
        self.assertIn("released 1 deliveries stuck in 'sending'", survivor.output(200_000))

    def test_a_pool_process_killed_mid_send_is_redelivered_at_once_but_completed_by_the_sweeper(self) -> None:
        deliveries, held, victim = self.kill_mid_send("prefork")
        [child] = pool_processes(victim)
        [task_id] = [task_id for task_id, args in unacked_tasks(deliver_event_task.name) if args == [held.pk]]

        os.kill(child, signal.SIGKILL)
        self.vendor.release()
        # reject_on_worker_lost: the worker puts the message back at once, takes it again, and
        # that run finds the row claimed by the dead attempt: it sends nothing.
        skipped = re.compile(rf"deliver_event_task\[{task_id}\] succeeded in [0-9.e-]+s: 'skipped'")
        wait_until(lambda: skipped.search(victim.output(200_000)), "the same message run again, and skipped", [victim], 30)
        log = victim.output(200_000)
        self.assertEqual(log.count(f"deliver_event_task[{task_id}] received"), 2)
        self.assertIn("WorkerLostError", log)
        self.assertEqual(Delivery.objects.get(pk=held.pk).status, DeliveryStatus.SENDING)

        env = worker_env(ROOMKIT_DELIVERY_STUCK_SECONDS="2", ROOMKIT_OUTBOX_SWEEP_SECONDS="1")
        beat = start_beat(self, self.tmp, env=env)
        wait_until(
            lambda: self.settled(deliveries), "every delivery completes", [victim, beat], 40, lambda: self.rows(deliveries)
        )

        self.assertOneMessagePerKey(deliveries)
        held.refresh_from_db()
        self.assertEqual(held.attempts, 2)
        self.assertIn("released 1 deliveries stuck in 'sending'", victim.output(200_000))
        attempts = self.vendor.by_key()[delivery_idempotency_key(held)]
        self.assertEqual([(a.status, a.replayed) for a in attempts], [(201, False), (201, True)])
