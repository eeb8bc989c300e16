"""Twilio outbound: deliveries sent by the ``twilio`` SDK to a fake Twilio over real HTTP.

A room opens with a message on ``hook-in`` (the generic HTTP channel) and the
Twilio channel ``tw-sms`` is attached at the customer's number; each later
message on ``hook-in`` is one delivery for ``tw-sms``, sent on commit (inline
task mode). The fake (``fakes.twilio.FakeTwilio``) checks Basic auth, the path
and the form as Twilio does, and can be scripted to fail like Twilio fails.
Retries are sent by the outbox sweeper after real time, as beat would.
"""

from __future__ import annotations

import time

from django.test import TestCase, override_settings
from django.utils import timezone

from channels_app import resilience
from channels_app.delivery_policy import parse_delivery_policy
from channels_app.providers import delivery_idempotency_key
from channels_app.services import sweep_outbox
from rooms.models import Delivery
from rooms.services import channel_attach
from tests.channels_app.fakes.twilio import DROP, FakeTwilio, fixture, twilio_error
from tests.channels_app.helpers import run_until_settled
from tests.channels_app.test_twilio_inbound import ACCOUNT, BASE, NUMBER, SERVICE, TOKEN, twilio_channel
from tests.support import make_channel, post_signed

CUSTOMER = "+14155550100"
HOOK_SECRET = "hook-secret"
FAST_RETRY = {"max_retries": 3, "base_delay_seconds": 0.05, "max_delay_seconds": 0.05}
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"


@override_settings(PUBLIC_BASE_URL=BASE)
class TwilioOutboundTestCase(TestCase):
    channel_id = "tw-sms"
    channel_type = "sms"

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.twilio = cls.enterClassContext(FakeTwilio(account_sid=ACCOUNT, auth_token=TOKEN))

    def setUp(self) -> None:
        self.twilio.reset()
        resilience.reset_all()
        self.addCleanup(resilience.reset_all)
        self._ids = 0

    def open_room(self, *, token: str = TOKEN, **config) -> str:
        """hook-in opens a room; the Twilio channel is attached to it at the customer's number."""
        make_channel("hook-in", secrets={"signing_secret": HOOK_SECRET})
        self.config = {"api_base": self.twilio.url, "retry": FAST_RETRY, **config}
        twilio_channel(self.channel_id, channel_type=self.channel_type, token=token, **self.config)
        room_id = self.say("opening")["room_id"]
        with self.captureOnCommitCallbacks(execute=True):
            channel_attach(room_id=room_id, channel_id=self.channel_id, address=CUSTOMER)
        self.assertEqual(self.twilio.requests, [], "attaching sends nothing")
        return room_id

    def say(self, text: str, **payload) -> dict:
        self._ids += 1
        with self.captureOnCommitCallbacks(execute=True):
            r = post_signed(
                self.client,
                "/webhooks/hook-in/",
                {"id": f"m-{self._ids}", "sender": "agent", "text": text, **payload},
                HOOK_SECRET,
            )
        self.assertEqual(r.status_code, 200, r.content)
        return r.json()

    def delivery(self, event_id: str) -> Delivery:
        return Delivery.objects.get(event_id=event_id, channel_id=self.channel_id)

    def breaker(self):
        return resilience.breaker_state(self.channel_id, parse_delivery_policy(self.config).circuit_breaker)


class SendTests(TwilioOutboundTestCase):
    def test_a_message_is_created_with_basic_auth_the_form_and_the_idempotency_token(self) -> None:
        self.open_room(messaging_service_sid=None)

        delivery = self.delivery(self.say("Your table is ready")["event_id"])

        (req,) = self.twilio.message_requests()
        self.assertEqual((req.method, req.path), ("POST", MESSAGES_PATH))
        self.assertEqual(req.basic_auth(), (ACCOUNT, TOKEN))
        self.assertTrue(req.headers["Content-Type"].startswith("application/x-www-form-urlencoded"))
        self.assertEqual(
            req.form,
            {
                "To": [CUSTOMER],
                "From": [NUMBER],
                "Body": ["Your table is ready"],
                "StatusCallback": [f"{BASE}/webhooks/tw-sms/status/"],
            },
        )
        self.assertEqual(req.headers["I-Twilio-Idempotency-Token"], delivery_idempotency_key(delivery))
        (sid,) = self.twilio.messages
        self.assertEqual((delivery.status, delivery.provider_message_id, delivery.attempts), ("queued", sid, 1))
        self.assertEqual((delivery.sent_as, delivery.last_error, delivery.error_code), ("", "", ""))

    def test_a_messaging_service_channel_sends_through_its_service(self) -> None:
        self.open_room(**{"from": None})

        delivery = self.delivery(self.say("hello")["event_id"])

        (req,) = self.twilio.message_requests()
        self.assertEqual(req.field("MessagingServiceSid"), SERVICE)
        self.assertIsNone(req.field("From"), "the service picks the sender from its pool")
        self.assertEqual(delivery.status, "queued")

    def test_media_goes_as_media_url_with_its_caption(self) -> None:
        self.open_room()

        self.say("the receipt", media=[{"url": "https://cdn.example.test/receipt.png", "mime_type": "image/png"}])

        (req,) = self.twilio.message_requests()
        self.assertEqual(req.form["MediaUrl"], ["https://cdn.example.test/receipt.png"])
        self.assertEqual(req.form["Body"], ["the receipt"])

    def test_a_channel_with_neither_from_nor_service_fails_without_calling_twilio(self) -> None:
        self.open_room(**{"from": None, "messaging_service_sid": None})

        delivery = self.delivery(self.say("hello")["event_id"])

        self.assertEqual(delivery.status, "failed")
        self.assertIn("'from' or 'messaging_service_sid'", delivery.last_error)
        self.assertEqual(self.twilio.requests, [])


class FailureTests(TwilioOutboundTestCase):
    def test_an_invalid_number_fails_at_once_without_retry_or_breaker(self) -> None:
        error = fixture("error_21211.json")
        self.twilio.script.append((400, error, {}))
        self.open_room(circuit_breaker={"failure_threshold": 1})

        delivery = self.delivery(self.say("hello")["event_id"])

        self.assertEqual((delivery.status, delivery.error_code, delivery.attempts), ("failed", "21211", 1))
        self.assertIn("Invalid 'To' Phone Number", delivery.last_error)
        self.assertIsNone(delivery.next_attempt_at)
        time.sleep(0.06)
        self.assertEqual(sweep_outbox(), 0)
        self.assertEqual(len(self.twilio.message_requests()), 1)
        self.assertEqual((self.breaker().state, self.breaker().failures), ("closed", 0))
        # With a threshold of 1 an open breaker would hold this one back.
        self.assertEqual(self.delivery(self.say("next")["event_id"]).status, "queued")

    def test_each_recipient_error_code_fails_alone(self) -> None:
        self.open_room(circuit_breaker={"failure_threshold": 1})
        for code in (21610, 21614, 21612, 21408):
            with self.subTest(code=code):
                self.twilio.script.append(twilio_error(400, code, "refused for this recipient"))
                delivery = self.delivery(self.say(f"hello {code}")["event_id"])
                self.assertEqual((delivery.status, delivery.error_code), ("failed", str(code)))
                self.assertEqual(self.breaker().state, "closed")

    def test_a_5xx_is_retried_with_the_same_idempotency_token(self) -> None:
        self.twilio.script.append(twilio_error(500, 20500, "Internal Server Error"))
        self.open_room()

        delivery = self.delivery(self.say("hello")["event_id"])
        self.assertEqual((delivery.status, delivery.attempts), ("pending", 1))
        self.assertIn("Twilio HTTP 500", delivery.last_error)
        self.assertGreater(delivery.next_attempt_at, timezone.now() - timezone.timedelta(seconds=1))

        delivery = run_until_settled(delivery.pk)

        self.assertEqual((delivery.status, delivery.attempts, delivery.last_error), ("queued", 2, ""))
        first, second = self.twilio.message_requests()
        self.assertEqual(first.body, second.body)
        self.assertEqual(first.headers["I-Twilio-Idempotency-Token"], second.headers["I-Twilio-Idempotency-Token"])
        self.assertEqual(self.breaker().state, "closed", "the success closed it again")

    def test_a_lost_response_is_retried_with_the_same_idempotency_token(self) -> None:
        # Twilio took the message but the answer never came: the retry carries
        # the same I-Twilio-Idempotency-Token (whether Twilio dedupes on it is
        # Twilio's; it is all a client can send).
        self.twilio.script.append(DROP)
        self.open_room()

        delivery = self.delivery(self.say("hello")["event_id"])
        self.assertEqual(delivery.status, "pending")
        self.assertIn("RemoteProtocolError", delivery.last_error)

        delivery = run_until_settled(delivery.pk)

        self.assertEqual(delivery.status, "queued")
        tokens = {r.headers["I-Twilio-Idempotency-Token"] for r in self.twilio.message_requests()}
        self.assertEqual(tokens, {delivery_idempotency_key(delivery)})

    def test_429_is_retried_after_retry_after_and_counts_toward_the_breaker(self) -> None:
        self.twilio.script.append((429, {"code": 20429, "message": "Too Many Requests", "status": 429}, {"Retry-After": "1"}))
        self.open_room(retry={"max_retries": 2, "base_delay_seconds": 0.01, "max_delay_seconds": 5})

        before = timezone.now()
        delivery = self.delivery(self.say("hello")["event_id"])

        self.assertEqual((delivery.status, delivery.error_code), ("pending", "20429"))
        wait = (delivery.next_attempt_at - before).total_seconds()
        self.assertGreaterEqual(wait, 0.9, "Retry-After: 1 replaces the 0.01 s backoff")
        self.assertEqual(self.breaker().failures, 1)

    def test_rejected_credentials_open_the_breaker_and_hold_the_outbox(self) -> None:
        self.open_room(token="a-token-twilio-does-not-know-0000", circuit_breaker={"failure_threshold": 1})

        first = self.delivery(self.say("hello")["event_id"])
        second = self.delivery(self.say("again")["event_id"])

        self.assertEqual((first.status, first.error_code), ("failed", "20003"))
        self.assertIn("authentication failed", first.last_error)
        self.assertEqual(self.breaker().state, "open")
        self.assertEqual((second.status, second.attempts), ("pending", 0), "held by the open breaker, not failed")
        self.assertEqual(len(self.twilio.message_requests()), 1)

    def test_an_answer_that_is_not_json_is_retried(self) -> None:
        self.twilio.script.append((201, b"<html>proxy error</html>", {"Content-Type": "text/html"}))
        self.open_room()

        delivery = self.delivery(self.say("hello")["event_id"])

        self.assertEqual(delivery.status, "pending")
        self.assertIn("unreadable answer from Twilio", delivery.last_error)
        self.assertEqual(run_until_settled(delivery.pk).status, "queued")

    def test_an_unreachable_twilio_is_retried(self) -> None:
        self.open_room(
            api_base="http://127.0.0.1:9", retry={"max_retries": 1, "base_delay_seconds": 0.01, "max_delay_seconds": 0.01}
        )

        delivery = run_until_settled(self.delivery(self.say("hello")["event_id"]).pk)

        self.assertEqual((delivery.status, delivery.attempts), ("dead", 2))
        self.assertIn("ConnectError", delivery.last_error)
