"""Outbound deliveries of the HTTP channel over real HTTP, with retry and dead letter
(the circuit breaker and rate limits: test_resilience).

A room is opened by a message on ``hook-in`` (a signed webhook); ``hook-out`` is
bound to it at a recipient address with ``rooms.services.channel_attach`` and
points at a FakeHTTPServer (a real server on 127.0.0.1). Tests run with the
inline task mode: the first attempt runs on commit; retries are left to the
outbox sweeper, which the tests run as beat would, after real time has passed.
"""

from __future__ import annotations

import socket
import time
from datetime import timedelta

from django.test import TestCase
from django.utils import timezone

from channels_app import resilience
from channels_app.services import delivery_attempt, delivery_retry, sweep_outbox
from channels_app.signing import sign
from rooms.errors import Conflict, NotFound
from rooms.models import Channel, Delivery
from rooms.selectors import clear_channel_cache
from rooms.services import channel_attach
from tests.channels_app.helpers import run_until_settled
from tests.support import FakeHTTPServer, make_channel, post_signed

IN_SECRET = "in-secret"
OUT_SECRET = "out-secret-91c2"
FAST_RETRY = {"max_attempts": 3, "base_delay_seconds": 0.02, "max_delay_seconds": 0.02}


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class OutboundTestCase(TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        # One server per class: stopping one waits out serve_forever's poll interval.
        cls.server = cls.enterClassContext(FakeHTTPServer())

    def setUp(self) -> None:
        resilience.reset_all()
        self.addCleanup(resilience.reset_all)
        self.server.requests.clear()
        self.server.responses = []
        self.server.default = (200, {"id": "fake-1"}, {})
        self.server.handler = None
        self._ids = 0

    def open_room(self, out_config: dict | None = None, *, addresses: tuple[str, ...] = ("crm-42",)) -> str:
        """A room with hook-in (the sender) and hook-out (the receiver, at each address)."""
        make_channel("hook-in", secrets={"signing_secret": IN_SECRET})
        config = {"url": self.server.url + "/hook", **(out_config or {})}
        make_channel("hook-out", config=config, secrets={"signing_secret": OUT_SECRET})
        room_id = self.send("opening message")["room_id"]
        for address in addresses:
            with self.captureOnCommitCallbacks(execute=True):
                channel_attach(room_id=room_id, channel_id="hook-out", address=address)
        self.assertEqual(self.server.requests, [], "attaching a channel sends nothing")
        return room_id

    def send(self, text: str, sender: str = "+15550001") -> dict:
        self._ids += 1
        with self.captureOnCommitCallbacks(execute=True):
            r = post_signed(
                self.client, "/webhooks/hook-in/", {"id": f"m-{self._ids}", "sender": sender, "text": text}, IN_SECRET
            )
        self.assertEqual(r.status_code, 200, r.content)
        return r.json()

    def delivery_for(self, event_id: str) -> Delivery:
        return Delivery.objects.get(event_id=event_id, channel_id="hook-out")


class DeliveryTests(OutboundTestCase):
    def test_delivery_is_a_signed_post_of_the_contract_payload(self) -> None:
        room_id = self.open_room()

        sent = self.send("Where is my order?")

        self.assertEqual(len(self.server.requests), 1)
        req = self.server.requests[0]
        self.assertEqual((req.method, req.path), ("POST", "/hook"))
        self.assertTrue(req.headers["Content-Type"].startswith("application/json"))
        self.assertEqual(req.headers["X-Signature-256"], sign(req.body, OUT_SECRET))
        self.assertEqual(
            req.json(),
            {
                "event_id": sent["event_id"],
                "room_id": room_id,
                "seq": sent["seq"],
                "recipient": "crm-42",
                "text": "Where is my order?",
                "content": {"type": "text", "body": "Where is my order?"},
            },
        )
        delivery = self.delivery_for(sent["event_id"])
        self.assertEqual(delivery.status, "sent")
        self.assertEqual(delivery.attempts, 1)
        self.assertIsNotNone(delivery.sent_at)
        self.assertEqual(delivery.provider_message_id, "fake-1")
        self.assertEqual(delivery.last_error, "")

    def test_only_the_other_channel_receives_the_message(self) -> None:
        self.open_room()

        sent = self.send("hello")

        self.assertEqual(
            list(Delivery.objects.filter(event_id=sent["event_id"]).values_list("channel_id", flat=True)), ["hook-out"]
        )

    def test_each_bound_address_gets_its_own_delivery(self) -> None:
        self.open_room(addresses=("crm-1", "crm-2"))

        self.send("hello")

        self.assertEqual(sorted(r.json()["recipient"] for r in self.server.requests), ["crm-1", "crm-2"])

    def test_content_the_receiver_cannot_carry_is_sent_as_text(self) -> None:
        self.open_room()
        with self.captureOnCommitCallbacks(execute=True):
            post_signed(
                self.client,
                "/webhooks/hook-in/",
                {"id": "media-1", "sender": "+15550001", "text": "receipt", "media": [{"url": "https://cdn.example.test/r.png"}]},
                IN_SECRET,
            )

        payload = self.server.requests[0].json()
        self.assertEqual(payload["content"], {"type": "text", "body": "[Media: https://cdn.example.test/r.png] receipt"})
        self.assertEqual(payload["text"], payload["content"]["body"])

    def test_duplicate_inbound_is_not_delivered_twice(self) -> None:
        self.open_room()
        with self.captureOnCommitCallbacks(execute=True):
            for _ in range(2):
                post_signed(self.client, "/webhooks/hook-in/", {"id": "same", "sender": "+15550001", "text": "hi"}, IN_SECRET)

        self.assertEqual(len(self.server.requests), 1)

    def test_an_attempt_on_a_finished_delivery_sends_nothing(self) -> None:
        self.open_room()
        delivery = self.delivery_for(self.send("hello")["event_id"])

        self.assertEqual(delivery_attempt(delivery_id=delivery.pk), "skipped")
        self.assertEqual(len(self.server.requests), 1)


class RetryTests(OutboundTestCase):
    def test_5xx_leaves_the_row_pending_and_the_sweeper_sends_it_when_due(self) -> None:
        self.server.responses = [(500, {"error": "boom"}, {})]
        self.open_room({"retry": {"max_attempts": 3, "base_delay_seconds": 0.3, "max_delay_seconds": 0.3}})

        sent = self.send("hello")

        delivery = self.delivery_for(sent["event_id"])
        self.assertEqual(delivery.status, "pending")
        self.assertEqual(delivery.attempts, 1)
        self.assertIn("HTTP 500", delivery.last_error)
        self.assertGreater(delivery.next_attempt_at, timezone.now())
        self.assertLessEqual(delivery.next_attempt_at, timezone.now() + timedelta(seconds=0.3))
        # Not due yet: a sweep now (or a stray early sweep) must not send it.
        self.assertEqual(sweep_outbox(), 0)
        sweep_outbox(now=timezone.now() + timedelta(seconds=5))
        self.assertEqual(len(self.server.requests), 1)
        self.assertEqual(Delivery.objects.get(pk=delivery.pk).status, "pending")

        delivery = run_until_settled(delivery.pk)

        self.assertEqual(delivery.status, "sent")
        self.assertEqual(delivery.attempts, 2)
        self.assertEqual(delivery.last_error, "")
        self.assertIsNone(delivery.next_attempt_at)
        self.assertEqual(len(self.server.requests), 2)
        self.assertEqual(self.server.requests[0].body, self.server.requests[1].body, "a retry sends the same payload")

    def test_4xx_fails_at_once_without_retry(self) -> None:
        self.server.default = (400, {"error": "bad recipient"}, {})
        self.open_room({"retry": FAST_RETRY})

        delivery = self.delivery_for(self.send("hello")["event_id"])

        self.assertEqual(delivery.status, "failed")
        self.assertIn("HTTP 400", delivery.last_error)
        self.assertIn("bad recipient", delivery.last_error)
        self.assertIsNone(delivery.next_attempt_at)
        time.sleep(0.05)
        self.assertEqual(sweep_outbox(), 0)
        self.assertEqual(len(self.server.requests), 1)

    def test_429_waits_as_long_as_retry_after_says(self) -> None:
        self.server.responses = [(429, {}, {"Retry-After": "120"})]
        self.open_room({"retry": {"max_retries": 2, "base_delay_seconds": 0.02, "max_delay_seconds": 300}})

        delivery = self.delivery_for(self.send("hello")["event_id"])

        self.assertEqual(delivery.status, "pending")
        wait = (delivery.next_attempt_at - timezone.now()).total_seconds()
        self.assertGreater(wait, 110)
        self.assertLessEqual(wait, 120)

    def test_unreachable_receiver_is_retried(self) -> None:
        self.open_room({"url": f"http://127.0.0.1:{_closed_port()}/hook", "retry": FAST_RETRY})

        delivery = self.delivery_for(self.send("hello")["event_id"])

        self.assertEqual(delivery.status, "pending")
        self.assertIn("ConnectError", delivery.last_error)

    def test_receiver_without_a_url_fails(self) -> None:
        self.open_room({"url": ""})

        delivery = self.delivery_for(self.send("hello")["event_id"])

        self.assertEqual(delivery.status, "failed")
        self.assertIn("url", delivery.last_error)

    def test_always_failing_delivery_is_dead_lettered_after_max_attempts(self) -> None:
        self.server.default = (500, {"error": "down"}, {})
        self.open_room({"retry": FAST_RETRY})

        delivery = run_until_settled(self.delivery_for(self.send("hello")["event_id"]).pk)

        self.assertEqual(delivery.status, "dead")
        self.assertEqual(delivery.attempts, 3)
        self.assertIn("HTTP 500", delivery.last_error)
        self.assertIsNone(delivery.next_attempt_at)
        self.assertEqual(len(self.server.requests), 3)
        time.sleep(0.05)
        self.assertEqual(sweep_outbox(), 0, "a dead letter is never picked up again by itself")

    def test_operator_retry_resends_a_dead_letter(self) -> None:
        self.server.default = (500, {"error": "down"}, {})
        self.open_room({"retry": FAST_RETRY})
        delivery = run_until_settled(self.delivery_for(self.send("hello")["event_id"]).pk)
        self.assertEqual(delivery.status, "dead")
        self.server.default = (200, {"id": "after-retry"}, {})

        with self.captureOnCommitCallbacks(execute=True):
            delivery_retry(delivery_id=delivery.pk)

        delivery.refresh_from_db()
        self.assertEqual(delivery.status, "sent")
        self.assertEqual(delivery.attempts, 1, "an operator retry starts a fresh budget")
        self.assertEqual(delivery.provider_message_id, "after-retry")
        self.assertEqual(len(self.server.requests), 4)

    def test_operator_retry_resends_a_failed_delivery(self) -> None:
        self.server.responses = [(400, {}, {})]
        self.open_room()
        delivery = self.delivery_for(self.send("hello")["event_id"])
        self.assertEqual(delivery.status, "failed")

        with self.captureOnCommitCallbacks(execute=True):
            delivery_retry(delivery_id=delivery.pk)

        self.assertEqual(Delivery.objects.get(pk=delivery.pk).status, "sent")

    def test_operator_retry_refuses_live_or_unknown_deliveries(self) -> None:
        self.open_room()
        delivery = self.delivery_for(self.send("hello")["event_id"])
        self.assertEqual(delivery.status, "sent")

        with self.assertRaises(Conflict):
            delivery_retry(delivery_id=delivery.pk)
        with self.assertRaises(NotFound):
            delivery_retry(delivery_id=10**9)
        self.assertEqual(len(self.server.requests), 1)

    def test_sweeper_releases_a_delivery_stranded_in_sending(self) -> None:
        self.server.responses = [(500, {}, {})]
        self.open_room({"retry": FAST_RETRY})
        delivery = self.delivery_for(self.send("hello")["event_id"])
        # A worker died mid-send long ago: the row still says 'sending'.
        Delivery.objects.filter(pk=delivery.pk).update(status="sending", updated_at=timezone.now() - timedelta(minutes=10))

        self.assertEqual(sweep_outbox(), 1)

        delivery.refresh_from_db()
        self.assertEqual(delivery.status, "sent")
        self.assertEqual(len(self.server.requests), 2)

    def test_sweeper_leaves_a_recent_sending_row_alone(self) -> None:
        self.server.responses = [(500, {}, {})]
        self.open_room({"retry": FAST_RETRY})
        delivery = self.delivery_for(self.send("hello")["event_id"])
        Delivery.objects.filter(pk=delivery.pk).update(status="sending", updated_at=timezone.now())

        self.assertEqual(sweep_outbox(), 0)
        self.assertEqual(Delivery.objects.get(pk=delivery.pk).status, "sending")


class DisabledChannelTests(OutboundTestCase):
    def test_a_disabled_channel_holds_its_outbox(self) -> None:
        self.open_room()
        sent = self.send("held")
        delivery = self.delivery_for(sent["event_id"])
        self.assertEqual(delivery.status, "sent")
        Channel.objects.filter(pk="hook-out").update(enabled=False)
        clear_channel_cache()
        self.server.requests.clear()
        Delivery.objects.filter(pk=delivery.pk).update(status="pending", attempts=0, next_attempt_at=None)

        self.assertEqual(delivery_attempt(delivery_id=delivery.pk), "pending")

        delivery.refresh_from_db()
        self.assertEqual((delivery.status, delivery.attempts, delivery.last_error), ("pending", 0, "channel disabled"))
        self.assertGreater(delivery.next_attempt_at, timezone.now())
        self.assertEqual(self.server.requests, [])
