"""Outbound SMS/MMS through Telnyx: ``POST {api_base}/v2/messages`` against the fake Telnyx API.

The delivery goes the real way (``delivery_attempt`` on commit, retries by the
outbox sweeper); the fake checks the Bearer key, the path and the JSON body,
honours ``Idempotency-Key`` as Telnyx documents it, and answers with the
documented message object or Telnyx's ``errors[]``. Classification: a refusal
for one recipient (STOP, an invalid number) fails at once and leaves the
circuit breaker alone; Telnyx's own trouble, throttling and network errors are
retried and counted.
"""

from __future__ import annotations

import socket
import time

from django.conf import settings
from django.test import SimpleTestCase
from django.utils import timezone

from channels_app import resilience
from channels_app.delivery_policy import parse_delivery_policy
from channels_app.providers import delivery_idempotency_key, get_provider, provider_names
from rooms.models import Delivery
from tests.channels_app.helpers import run_until_settled
from tests.channels_app.test_telnyx_support import FROM, NO_RETRY, PROFILE, RECIPIENT, TelnyxTestCase

FAST_RETRY = {"max_retries": 3, "base_delay_seconds": 0.02, "max_delay_seconds": 0.02}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def breaker_failures(channel_id: str, config: dict) -> int:
    return resilience.breaker_state(channel_id, parse_delivery_policy(config).circuit_breaker).failures


class SendTests(TelnyxTestCase):
    def test_a_text_is_one_authenticated_json_post_with_our_status_url_and_idempotency_key(self) -> None:
        self.make_telnyx_channel()
        self.open_room()

        delivery = self.say("Your order has shipped")

        [req] = self.telnyx.requests
        self.assertEqual((req.method, req.path), ("POST", "/v2/messages"))
        self.assertEqual(req.headers["authorization"], f"Bearer {self.telnyx.api_key}")
        self.assertTrue(req.headers["content-type"].startswith("application/json"))
        self.assertEqual(req.headers["idempotency-key"], delivery_idempotency_key(delivery))
        self.assertEqual(
            req.json(),
            {
                "from": FROM,
                "messaging_profile_id": PROFILE,
                "to": RECIPIENT,
                "text": "Your order has shipped",
                "webhook_url": f"{settings.PUBLIC_BASE_URL}/webhooks/tx-sms/status/",
            },
        )
        [(message_id, message)] = self.telnyx.messages.items()
        self.assertEqual((delivery.status, delivery.provider_message_id, delivery.attempts), ("queued", message_id, 1))
        self.assertEqual((delivery.error_code, delivery.sent_as, delivery.last_error), ("", "", ""))
        self.assertIsNotNone(delivery.sent_at)

    def test_a_profile_alone_sends_from_its_number_pool(self) -> None:
        self.make_telnyx_channel(**{"from": None})
        self.open_room()

        self.say("hi")

        body = self.telnyx.requests[0].json()
        self.assertNotIn("from", body)
        self.assertEqual(body["messaging_profile_id"], PROFILE)

    def test_media_goes_as_media_urls_with_the_caption_as_text(self) -> None:
        self.make_telnyx_channel()
        self.open_room()

        delivery = self.say(
            {"type": "media", "url": "https://cdn.example.test/r.png", "mime_type": "image/png", "caption": "receipt"}
        )

        body = self.telnyx.requests[0].json()
        self.assertEqual((body["media_urls"], body["text"]), (["https://cdn.example.test/r.png"], "receipt"))
        self.assertEqual(self.telnyx.messages[delivery.provider_message_id]["type"], "MMS")

    def test_a_retry_after_a_lost_answer_is_not_a_second_message(self) -> None:
        self.make_telnyx_channel(retry=FAST_RETRY)
        self.open_room()
        self.telnyx.lose_next_answer = True

        delivery = self.say("only once")

        self.assertEqual(delivery.status, "pending", "the lost answer is a network error: retried")
        delivery = run_until_settled(delivery.pk)
        self.assertEqual((delivery.status, delivery.attempts), ("queued", 2))
        first, second = self.telnyx.requests
        self.assertEqual(first.headers["idempotency-key"], second.headers["idempotency-key"])
        self.assertEqual(first.body, second.body, "a retry sends the same bytes, or Telnyx refuses the key")
        self.assertEqual(list(self.telnyx.messages), [delivery.provider_message_id], "Telnyx replayed its first answer")

    def test_each_delivery_has_its_own_key(self) -> None:
        self.make_telnyx_channel()
        self.open_room()

        a, b = self.say("one"), self.say("two")

        keys = [r.headers["idempotency-key"] for r in self.telnyx.requests]
        self.assertEqual(keys, [delivery_idempotency_key(a), delivery_idempotency_key(b)])
        self.assertEqual(len(set(keys)), 2)
        self.assertEqual(len(self.telnyx.messages), 2)


class PermanentRefusalTests(TelnyxTestCase):
    """Telnyx's "never for this recipient" codes: failed at once, error_code kept, breaker untouched."""

    CASES = {
        "40300": (409, "Blocked due to STOP message"),
        "40310": (400, "Invalid 'to' address"),
        "10002": (400, "Invalid phone number"),
    }

    def test_each_refusal_fails_at_once_without_counting_against_the_breaker(self) -> None:
        config = {"retry": FAST_RETRY, "circuit_breaker": {"failure_threshold": 1, "recovery_timeout_seconds": 60}}
        self.make_telnyx_channel(**config)
        self.open_room()
        for code, (status, title) in self.CASES.items():
            with self.subTest(code=code):
                self.telnyx.requests.clear()
                self.telnyx.refuse[RECIPIENT] = (status, code, title)

                delivery = self.say(f"to a refusing number ({code})")

                self.assertEqual((delivery.status, delivery.error_code, delivery.attempts), ("failed", code, 1))
                self.assertIn(title, delivery.last_error)
                self.assertIn(f"HTTP {status}", delivery.last_error)
                self.assertIsNone(delivery.next_attempt_at)
                self.assertEqual(breaker_failures("tx-sms", config), 0)
                time.sleep(0.05)
                self.assertEqual(run_until_settled(delivery.pk).status, "failed")
                self.assertEqual(len(self.telnyx.requests), 1, "not retried")
        # A threshold of one failure, and the channel still sends: no refusal counted.
        self.telnyx.refuse.clear()
        self.assertEqual(self.say("to a number that takes it").status, "queued")

    def test_a_wrong_api_key_fails_with_telnyx_code(self) -> None:
        self.make_telnyx_channel(secrets={"api_key": "not-the-key"})
        self.open_room()

        delivery = self.say("hi")

        self.assertEqual((delivery.status, delivery.error_code), ("failed", "10009"))
        self.assertNotIn("not-the-key", delivery.last_error)
        self.assertEqual(self.telnyx.messages, {})

    def test_a_channel_without_sender_or_key_fails_as_configuration(self) -> None:
        for channel_id, kwargs in (("tx-nofrom", {"from": None, "messaging_profile_id": None}), ("tx-nokey", {"secrets": {}})):
            with self.subTest(channel_id):
                self.make_telnyx_channel(channel_id, **kwargs)
                self.open_room(channel_id)

                delivery = self.say("hi", channel_id=channel_id)

                self.assertEqual((delivery.status, delivery.error_code), ("failed", "configuration"))
        self.assertEqual(self.telnyx.requests, [])


class TransientFailureTests(TelnyxTestCase):
    """Telnyx's trouble, throttling and the network: retried with backoff, counted by the breaker."""

    def test_a_5xx_is_retried_and_counted(self) -> None:
        config = {"retry": FAST_RETRY}
        self.make_telnyx_channel(**config)
        self.open_room()
        self.telnyx.next_answers.append((500, "10007", "Unexpected error", {}))

        delivery = self.say("hello")

        self.assertEqual((delivery.status, delivery.error_code), ("pending", "10007"))
        self.assertEqual(breaker_failures("tx-sms", config), 1)
        delivery = run_until_settled(delivery.pk)
        self.assertEqual((delivery.status, delivery.attempts, delivery.error_code), ("queued", 2, ""))

    def test_throttling_waits_as_long_as_retry_after_says(self) -> None:
        config = {"retry": {"max_retries": 3, "base_delay_seconds": 0.01, "max_delay_seconds": 30}}
        self.make_telnyx_channel(**config)
        self.open_room()
        self.telnyx.next_answers.append((429, "10011", "Too many requests", {"Retry-After": "7"}))

        before = timezone.now()
        delivery = self.say("hello")

        self.assertEqual((delivery.status, delivery.error_code), ("pending", "10011"))
        wait = (delivery.next_attempt_at - before).total_seconds()
        self.assertGreaterEqual(wait, 6.5)
        self.assertLessEqual(wait, 8)

    def test_a_transient_code_is_retried_whatever_its_http_status(self) -> None:
        self.make_telnyx_channel(retry=FAST_RETRY)
        self.open_room()
        # Throttled upstream, reported with a 4xx status: the code says "not now".
        self.telnyx.next_answers.append((400, "40011", "Too many requests", {}))

        delivery = self.say("hello")

        self.assertEqual((delivery.status, delivery.error_code), ("pending", "40011"))

    def test_a_network_error_is_retried_and_dead_lettered_when_retries_run_out(self) -> None:
        config = {"retry": NO_RETRY, "api_base": f"http://127.0.0.1:{_closed_port()}"}
        self.make_telnyx_channel(**config)
        self.open_room()

        delivery = self.say("hello")

        self.assertEqual(delivery.status, "dead")
        self.assertIn("ConnectError", delivery.last_error)
        self.assertEqual(breaker_failures("tx-sms", config), 1)

    def test_a_5xx_that_persists_ends_dead(self) -> None:
        self.make_telnyx_channel(retry={"max_retries": 1, "base_delay_seconds": 0.02, "max_delay_seconds": 0.02})
        self.open_room()
        self.telnyx.next_answers.extend([(503, "10007", "Unexpected error", {})] * 2)

        delivery = run_until_settled(self.say("hello").pk)

        self.assertEqual((delivery.status, delivery.attempts, delivery.error_code), ("dead", 2, "10007"))
        self.assertEqual(Delivery.objects.filter(status="queued").count(), 0)


class ProviderSpecTests(SimpleTestCase):
    def test_telnyx_is_registered_for_sms_and_rcs(self) -> None:
        self.assertIn("telnyx", provider_names("sms"))
        self.assertIn("telnyx", provider_names("rcs"))
        self.assertNotIn("telnyx", provider_names("whatsapp"))

    def test_the_spec_asks_for_a_sender_a_public_key_and_the_api_key(self) -> None:
        spec = get_provider("telnyx").spec
        self.assertEqual((spec.secrets, spec.required_secrets, spec.webhook), (("api_key",), ("api_key",), "signature"))
        self.assertEqual(
            sorted(spec.config_errors({})),
            sorted([("public_key", "Webhook public key is required"), ("from", "one of from, messaging_profile_id is required")]),
        )
        self.assertEqual(spec.config_errors({"public_key": "k", "messaging_profile_id": "p"}), [])
        self.assertEqual(spec.config_errors({"public_key": "k", "from": FROM}), [])
