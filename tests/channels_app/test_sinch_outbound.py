"""Sinch SMS outbound and delivery reports, over real HTTP against a fake Sinch (``fakes/sinch.py``).

A room is opened by a message on ``hook-in`` (the generic HTTP channel) and
``sinch-sms`` is attached to it at a phone number; each message then becomes a
Delivery that the Sinch adapter really POSTs as a batch. The fake checks the
Bearer token, the service plan in the path and the batch JSON, as Sinch does.
Reports come back signed to ``/webhooks/sinch-sms/status/`` in Sinch's
documented shapes (``fixtures/sinch/``).
"""

from __future__ import annotations

import json
import time
from datetime import timedelta

from django.conf import settings
from django.test import TestCase
from django.utils import timezone

from channels_app import resilience
from channels_app.delivery_policy import channel_delivery_policy
from channels_app.providers.base import delivery_idempotency_key
from channels_app.providers.sinch import _api_base
from channels_app.services import delivery_attempt
from rooms.models import Channel, Delivery
from rooms.selectors import clear_channel_cache
from rooms.services import channel_attach
from tests.channels_app.fakes.sinch import FIXTURES, FakeSinch
from tests.channels_app.helpers import run_until_settled
from tests.channels_app.test_sinch_webhooks import sinch_headers
from tests.support import make_channel, post_signed

PLAN = "a1b2c3d4plan"
TOKEN = "sinch-api-token-77"
SECRET = "sinch-webhook-secret-out"
IN_SECRET = "in-secret"
RECIPIENT = "+15551230001"
FAST_RETRY = {"max_attempts": 3, "base_delay_seconds": 0.02, "max_delay_seconds": 0.02}


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / "sinch" / name).read_text())


class SinchOutboundTestCase(TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.sinch = cls.enterClassContext(FakeSinch(service_plan_id=PLAN, api_token=TOKEN))

    def setUp(self) -> None:
        resilience.reset_all()
        self.addCleanup(resilience.reset_all)
        self.sinch.reset()
        self._ids = 0

    def open_room(self, extra_config: dict | None = None, *, secrets: dict | None = None) -> str:
        make_channel("hook-in", secrets={"signing_secret": IN_SECRET})
        make_channel(
            "sinch-sms",
            channel_type="sms",
            provider="sinch",
            config={"service_plan_id": PLAN, "from": "+12017777777", "api_base": self.sinch.url, **(extra_config or {})},
            secrets={"api_token": TOKEN, "webhook_secret": SECRET} if secrets is None else secrets,
        )
        room_id = self.say("opening")["room_id"]
        with self.captureOnCommitCallbacks(execute=True):
            channel_attach(room_id=room_id, channel_id="sinch-sms", address=RECIPIENT)
        self.assertEqual(self.sinch.requests, [])
        return room_id

    def say(self, text: str, *, media: list | None = None) -> dict:
        self._ids += 1
        payload = {"id": f"m-{self._ids}", "sender": "+15550001", "text": text} | ({"media": media} if media else {})
        with self.captureOnCommitCallbacks(execute=True):
            r = post_signed(self.client, "/webhooks/hook-in/", payload, IN_SECRET)
        self.assertEqual(r.status_code, 200, r.content)
        return r.json()

    def delivery(self, event_id: str) -> Delivery:
        return Delivery.objects.get(event_id=event_id, channel_id="sinch-sms")

    def report(self, payload: dict, *, secret: str = SECRET):
        body = json.dumps(payload).encode()
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post(
                "/webhooks/sinch-sms/status/", data=body, content_type="application/json", **sinch_headers(body, secret)
            )


class SendTests(SinchOutboundTestCase):
    def test_a_text_delivery_is_one_bearer_authenticated_batch_with_per_recipient_reports(self) -> None:
        self.open_room()

        sent = self.say("Your order shipped")

        self.assertEqual(len(self.sinch.requests), 1)
        req = self.sinch.requests[0]
        self.assertEqual((req.method, req.path), ("POST", f"/xms/v1/{PLAN}/batches"))
        self.assertEqual(req.headers["Authorization"], f"Bearer {TOKEN}")
        delivery = self.delivery(sent["event_id"])
        self.assertEqual(
            req.json(),
            {
                "from": "+12017777777",
                "to": [RECIPIENT],
                "type": "mt_text",
                "body": "Your order shipped",
                "delivery_report": "per_recipient",
                "callback_url": f"{settings.PUBLIC_BASE_URL}/webhooks/sinch-sms/status/",
                "client_reference": delivery_idempotency_key(delivery),
            },
        )
        self.assertEqual(delivery.status, "queued")
        self.assertEqual(delivery.provider_message_id, self.sinch.batches[0]["id"])
        self.assertEqual((delivery.last_error, delivery.error_code, delivery.attempts), ("", "", 1))

    def test_a_media_delivery_is_an_mt_media_batch_with_its_caption(self) -> None:
        self.open_room()

        sent = self.say("receipt", media=[{"url": "https://cdn.example.test/r.png", "mime_type": "image/png"}])

        batch = self.sinch.requests[0].json()
        self.assertEqual(
            (batch["type"], batch["body"]), ("mt_media", {"url": "https://cdn.example.test/r.png", "message": "receipt"})
        )
        self.assertEqual(self.delivery(sent["event_id"]).status, "queued")

    def test_api_base_default_and_trailing_slash(self) -> None:
        self.open_room({"api_base": self.sinch.url + "/"})

        self.say("hello")

        self.assertEqual(self.sinch.requests[0].path, f"/xms/v1/{PLAN}/batches")
        self.assertEqual(_api_base({}), "https://us.sms.api.sinch.com")


class FailureTests(SinchOutboundTestCase):
    def breaker_failures(self) -> int:
        policy = channel_delivery_policy(Channel.objects.get(pk="sinch-sms").config).circuit_breaker
        return resilience.breaker_state("sinch-sms", policy).failures

    def test_a_bad_number_is_permanent_with_sinchs_code_and_no_breaker_count(self) -> None:
        # Sinch's answer for a badly formatted recipient (our fake checks E.164, as Sinch does).
        self.sinch.answers = [(400, fixture("error_400_syntax_invalid_parameter_format.json"), {})]
        self.open_room({"retry": FAST_RETRY})

        delivery = self.delivery(self.say("hello")["event_id"])

        self.assertEqual((delivery.status, delivery.error_code), ("failed", "syntax_invalid_parameter_format"))
        self.assertIn("HTTP 400", delivery.last_error)
        time.sleep(0.05)
        run_until_settled(delivery.pk)
        self.assertEqual(len(self.sinch.posts), 1, "a permanent error is not retried")
        self.assertEqual(self.breaker_failures(), 0)

    def test_a_blocked_account_403_is_permanent(self) -> None:
        self.sinch.answers = [(403, fixture("error_403_blocked_account.json"), {})]
        self.open_room({"retry": FAST_RETRY})

        delivery = self.delivery(self.say("hello")["event_id"])

        self.assertEqual((delivery.status, delivery.error_code), ("failed", "blocked_account"))

    def test_a_wrong_token_is_permanent(self) -> None:
        self.open_room({"retry": FAST_RETRY}, secrets={"api_token": "stale-token", "webhook_secret": SECRET})

        delivery = self.delivery(self.say("hello")["event_id"])

        self.assertEqual((delivery.status, delivery.error_code), ("failed", "401"))
        self.assertEqual(self.sinch.batches, [])

    def test_a_5xx_is_retried_and_counted_then_sent(self) -> None:
        self.sinch.answers = [(503, {"code": "service_unavailable", "text": "try later"}, {})]
        self.open_room({"retry": FAST_RETRY})

        delivery = self.delivery(self.say("hello")["event_id"])

        self.assertEqual((delivery.status, delivery.error_code), ("pending", "service_unavailable"))
        self.assertEqual(self.breaker_failures(), 1)
        delivery = run_until_settled(delivery.pk)
        self.assertEqual(delivery.status, "queued")
        self.assertEqual(len(self.sinch.batches), 1)
        # The retry first asked Sinch whether the batch already existed.
        self.assertEqual([r.method for r in self.sinch.requests], ["POST", "GET", "POST"])
        self.assertEqual(self.sinch.requests[1].query["client_reference"], [delivery_idempotency_key(delivery)])

    def test_a_429_waits_for_retry_after(self) -> None:
        self.sinch.answers = [(429, {"code": "too_many_requests", "text": "slow down"}, {"Retry-After": "1"})]
        self.open_room({"retry": {"max_attempts": 3, "base_delay_seconds": 0.01, "max_delay_seconds": 5}})

        delivery = self.delivery(self.say("hello")["event_id"])

        self.assertEqual((delivery.status, delivery.error_code), ("pending", "too_many_requests"))
        wait = (delivery.next_attempt_at - timezone.now()).total_seconds()
        self.assertGreater(wait, 0.8)
        self.assertEqual(run_until_settled(delivery.pk).status, "queued")

    def test_5xx_until_retries_run_out_is_a_dead_letter(self) -> None:
        self.sinch.answers = [(500, b"", {})] * 6
        self.open_room({"retry": FAST_RETRY})

        delivery = run_until_settled(self.delivery(self.say("hello")["event_id"]).pk)

        self.assertEqual((delivery.status, delivery.attempts, delivery.error_code), ("dead", 3, "500"))

    def test_an_answer_lost_after_sinch_accepted_is_not_sent_twice(self) -> None:
        self.sinch.drop_after_accept = 1
        self.open_room({"retry": FAST_RETRY})

        delivery = self.delivery(self.say("hello")["event_id"])
        self.assertEqual(delivery.status, "pending")  # no answer: retryable
        delivery = run_until_settled(delivery.pk)

        self.assertEqual(delivery.status, "queued")
        self.assertEqual(len(self.sinch.batches), 1, "one batch at Sinch, not two")
        self.assertEqual(delivery.provider_message_id, self.sinch.batches[0]["id"])
        self.assertEqual([r.method for r in self.sinch.requests], ["POST", "GET"])

    def test_a_channel_without_its_token_fails_without_calling_sinch(self) -> None:
        self.open_room({"retry": FAST_RETRY}, secrets={"webhook_secret": SECRET})

        delivery = self.delivery(self.say("hello")["event_id"])

        self.assertEqual((delivery.status, delivery.error_code), ("failed", "not_configured"))
        self.assertEqual(self.sinch.requests, [])


class DeliveryReportTests(SinchOutboundTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.open_room()
        self.sent = self.delivery(self.say("hello")["event_id"])
        self.batch_id = self.sent.provider_message_id

    def status(self) -> Delivery:
        return Delivery.objects.get(pk=self.sent.pk)

    def recipient_report(self, status: str, code: int = 0) -> dict:
        return {**fixture("recipient_delivery_report_delivered.json"), "batch_id": self.batch_id, "status": status, "code": code}

    def test_reports_move_the_row_forward_and_never_back(self) -> None:
        # Queued: the row is already queued (Sinch accepted the batch), so nothing moves.
        for vendor, updated, ours in [("Queued", 0, "queued"), ("Dispatched", 1, "sent"), ("Delivered", 1, "delivered")]:
            with self.subTest(vendor):
                r = self.report(self.recipient_report(vendor))
                self.assertEqual((r.status_code, r.json()), (200, {"updated": updated}))
                self.assertEqual(self.status().status, ours)

        for late in ("Dispatched", "Queued", "Unknown"):
            with self.subTest(late=late):
                r = self.report(self.recipient_report(late))
                self.assertEqual(r.json(), {"updated": 0})
                self.assertEqual(self.status().status, "delivered")

    def test_an_aborted_report_fails_the_delivery_with_sinchs_code(self) -> None:
        payload = {**fixture("recipient_delivery_report_aborted.json"), "batch_id": self.batch_id}

        self.assertEqual(self.report(payload).json(), {"updated": 1})

        row = self.status()
        self.assertEqual((row.status, row.error_code), ("failed", "412"))
        self.assertIn("Aborted", row.last_error)

    def test_a_carrier_failure_is_undelivered_and_a_late_delivered_cannot_undo_a_final_failure(self) -> None:
        self.report(self.recipient_report("Failed", 401))
        self.assertEqual((self.status().status, self.status().error_code), ("undelivered", "401"))

        self.report(self.recipient_report("Expired", 406))

        self.assertEqual(self.status().status, "undelivered")

    def test_a_batch_summary_report_applies_too(self) -> None:
        payload = {**fixture("delivery_report_sms.json"), "batch_id": self.batch_id}

        self.assertEqual(self.report(payload).json(), {"updated": 1})
        self.assertEqual(self.status().status, "delivered")

    def test_an_unknown_status_or_batch_changes_nothing(self) -> None:
        for payload in (self.recipient_report("Teleported"), {**self.recipient_report("Delivered"), "batch_id": "someone-else"}):
            with self.subTest(payload["status"]):
                self.assertEqual(self.report(payload).json(), {"updated": 0})
        self.assertEqual(self.status().status, "queued")

    def test_an_unsigned_or_wrongly_signed_report_is_403_and_changes_nothing(self) -> None:
        r = self.report(self.recipient_report("Delivered"), secret="wrong")

        self.assertEqual(r.status_code, 403)
        self.assertEqual(self.status().status, "queued")

    def test_a_stale_report_is_refused(self) -> None:
        body = json.dumps(self.recipient_report("Delivered")).encode()
        headers = sinch_headers(body, SECRET, timestamp=int(time.time()) - 3600)

        r = self.client.post("/webhooks/sinch-sms/status/", data=body, content_type="application/json", **headers)

        self.assertEqual(r.status_code, 403)
        self.assertEqual(self.status().status, "queued")

    def test_a_malformed_report_is_400(self) -> None:
        for payload in (
            {"type": "recipient_delivery_report_sms", "status": "Delivered"},
            {"type": "delivery_report_sms", "batch_id": "x"},
        ):
            with self.subTest(payload=payload):
                self.assertEqual(self.report(payload).status_code, 400)
        self.assertEqual(self.status().status, "queued")

    def test_a_report_for_another_channels_delivery_changes_nothing(self) -> None:
        make_channel(
            "sinch-other",
            channel_type="sms",
            provider="sinch",
            config={"service_plan_id": PLAN, "from": "+12017777777"},
            secrets={"api_token": TOKEN, "webhook_secret": "other"},
        )
        clear_channel_cache()
        body = json.dumps(self.recipient_report("Delivered")).encode()

        r = self.client.post(
            "/webhooks/sinch-other/status/", data=body, content_type="application/json", **sinch_headers(body, "other")
        )

        self.assertEqual(r.json(), {"updated": 0})
        self.assertEqual(self.status().status, "queued")


class NextAttemptTests(SinchOutboundTestCase):
    def test_the_lookup_on_retry_does_not_hide_a_failed_lookup(self) -> None:
        # First attempt: 503. Retry: the lookup itself gets a 503; nothing is posted blind.
        self.sinch.answers = [(503, b"", {}), (503, b"", {})]
        self.open_room({"retry": {"max_attempts": 3, "base_delay_seconds": 0.01, "max_delay_seconds": 0.01}})
        delivery = self.delivery(self.say("hello")["event_id"])

        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))

        self.assertEqual(delivery_attempt(delivery_id=delivery.pk), "pending")
        self.assertEqual([r.method for r in self.sinch.requests], ["POST", "GET"])
        self.assertEqual(self.sinch.batches, [])
