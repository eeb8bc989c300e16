"""Telnyx webhook verification: Ed25519 over ``{telnyx-timestamp}|{raw body}``, five minutes either way.

Signatures are real: made by the fake Telnyx's test key pair (PyNaCl), checked
against the channel's base64 ``public_key``. Every refusal is a 403 in the
contract's error shape and writes no row; a replay inside the window is the
same Telnyx message id, so it stores nothing new, and a replayed status event
changes nothing.
"""

from __future__ import annotations

import base64
import json
import time

from django.test import SimpleTestCase
from nacl.signing import SigningKey

from channels_app.providers.telnyx.signature import TOLERANCE_SECONDS, verify_signature
from rooms.models import Delivery, RoomEvent
from tests.channels_app.fakes.telnyx import fixture
from tests.channels_app.helpers import error_of, row_counts
from tests.channels_app.test_telnyx_support import TelnyxTestCase

URL = "/webhooks/tx-sms/"
STATUS_URL = "/webhooks/tx-sms/status/"
KEY = SigningKey(bytes(range(32)))
PUBLIC = base64.b64encode(bytes(KEY.verify_key)).decode()
OTHER_KEY = SigningKey(bytes(range(1, 33)))


def _sign(body: bytes, stamp: str, key: SigningKey = KEY) -> str:
    return base64.b64encode(key.sign(stamp.encode() + b"|" + body).signature).decode()


class VerifySignatureTests(SimpleTestCase):
    """The check itself, at a fixed clock."""

    NOW = 1_700_000_000.0
    BODY = b'{"data": {"event_type": "message.received"}}'

    def verify(self, body: bytes = BODY, *, stamp: str = str(int(NOW)), signature: str | None = None, **kw) -> bool:
        signature = _sign(body, stamp) if signature is None else signature
        return verify_signature(body, public_key=kw.get("public_key", PUBLIC), signature=signature, timestamp=stamp, now=self.NOW)

    def test_a_fresh_signature_of_these_bytes_verifies(self) -> None:
        self.assertTrue(self.verify())

    def test_the_window_is_five_minutes_both_ways(self) -> None:
        for offset, ok in (
            (-TOLERANCE_SECONDS, True),
            (TOLERANCE_SECONDS, True),
            (-TOLERANCE_SECONDS - 1, False),
            (TOLERANCE_SECONDS + 1, False),
        ):
            with self.subTest(offset=offset):
                stamp = str(int(self.NOW) + offset)
                self.assertIs(self.verify(stamp=stamp, signature=_sign(self.BODY, stamp)), ok)

    def test_other_bytes_another_key_or_another_timestamp_fail(self) -> None:
        stamp = str(int(self.NOW))
        self.assertFalse(self.verify(self.BODY + b" ", signature=_sign(self.BODY, stamp)))
        self.assertFalse(self.verify(signature=_sign(self.BODY, stamp, OTHER_KEY)))
        # A signature moved onto a newer timestamp (to dodge the window) no longer matches.
        self.assertFalse(self.verify(stamp=str(int(self.NOW) + 1), signature=_sign(self.BODY, stamp)))

    def test_malformed_headers_and_keys_fail_without_raising(self) -> None:
        good = _sign(self.BODY, str(int(self.NOW)))
        cases = {
            "no signature": {"signature": ""},
            "not base64": {"signature": "%%%not-base64%%%"},
            "short signature": {"signature": base64.b64encode(b"x" * 10).decode()},
            "timestamp not digits": {"stamp": "17e8", "signature": good},
            "timestamp in other digits": {"stamp": "١٧٠٠٠٠٠٠٠٠", "signature": good},
            "no key": {"public_key": ""},
            "key not base64": {"public_key": "not a key!"},
            "key of the wrong size": {"public_key": base64.b64encode(b"k" * 31).decode()},
        }
        for name, kw in cases.items():
            with self.subTest(name):
                self.assertFalse(self.verify(**kw))


class WebhookSignatureTests(TelnyxTestCase):
    """Through the view: what a refused request leaves behind (nothing) and what a replay does."""

    def setUp(self) -> None:
        super().setUp()
        self.make_telnyx_channel()
        self.body = json.dumps(fixture("inbound_sms.json")).encode()

    def assertRefused(self, response) -> None:
        before = row_counts()
        error_of(self, response, 403, "invalid_signature")
        self.assertEqual(row_counts(), before)
        self.assertFalse(RoomEvent.objects.filter(provider_message_id="7ee4241c-f127-47e5-9c34-3aac291f8058").exists())

    def test_a_signed_message_is_accepted(self) -> None:
        r = self.post_webhook(URL, self.body)

        self.assertEqual(r.status_code, 200, r.content)
        self.assertEqual(
            RoomEvent.objects.get(pk=r.json()["event_id"]).provider_message_id, "7ee4241c-f127-47e5-9c34-3aac291f8058"
        )

    def test_missing_signature_or_timestamp_is_403(self) -> None:
        headers = self.telnyx.signed(self.body)
        for missing in headers:
            with self.subTest(missing=missing):
                self.assertRefused(self.post_webhook(URL, self.body, headers={k: v for k, v in headers.items() if k != missing}))

    def test_a_signature_by_another_key_is_403(self) -> None:
        self.assertRefused(self.post_webhook(URL, self.body, key=OTHER_KEY))

    def test_a_tampered_body_is_403(self) -> None:
        headers = self.telnyx.signed(self.body)
        tampered = self.body.replace(b"Hello, World!", b"Send me money")

        self.assertRefused(self.post_webhook(URL, tampered, headers=headers))

    def test_a_stale_or_future_timestamp_is_403(self) -> None:
        now = int(time.time())
        for stamp in (now - TOLERANCE_SECONDS - 5, now + TOLERANCE_SECONDS + 5):
            with self.subTest(offset=stamp - now):
                self.assertRefused(self.post_webhook(URL, self.body, timestamp=stamp))

    def test_a_signature_that_is_not_base64_is_403(self) -> None:
        headers = {**self.telnyx.signed(self.body), "telnyx-signature-ed25519": "not base64 at all"}

        self.assertRefused(self.post_webhook(URL, self.body, headers=headers))

    def test_a_channel_without_a_public_key_refuses_everything(self) -> None:
        self.make_telnyx_channel("tx-nokey", public_key=None)

        r = self.post_webhook("/webhooks/tx-nokey/", self.body)

        error_of(self, r, 403, "invalid_signature")
        self.assertFalse(RoomEvent.objects.exists())

    def test_a_replayed_request_stores_one_event(self) -> None:
        headers = self.telnyx.signed(self.body)

        first = self.post_webhook(URL, self.body, headers=headers)
        counts = row_counts()
        again = self.post_webhook(URL, self.body, headers=headers)

        self.assertEqual((first.status_code, again.status_code), (200, 200))
        self.assertEqual(again.json()["event_id"], first.json()["event_id"])
        self.assertIs(again.json()["duplicate"], True)
        self.assertEqual(row_counts(), counts)
        self.assertEqual(RoomEvent.objects.filter(provider_message_id="7ee4241c-f127-47e5-9c34-3aac291f8058").count(), 1)

    def test_the_status_url_verifies_the_same_way(self) -> None:
        self.open_room()
        delivery = self.say("hello")
        event = json.dumps(self.status_event("message_finalized.json", delivery.provider_message_id)).encode()

        for headers in (
            {},
            self.telnyx.signed(event, key=OTHER_KEY),
            self.telnyx.signed(event, timestamp=int(time.time()) - 400),
        ):
            with self.subTest(headers=sorted(headers)):
                error_of(self, self.post_webhook(STATUS_URL, event, headers=headers), 403, "invalid_signature")
                self.assertEqual(Delivery.objects.get(pk=delivery.pk).status, "queued")

    def test_a_replayed_status_event_changes_nothing(self) -> None:
        self.open_room()
        delivery = self.say("hello")
        finalized = json.dumps(self.status_event("message_finalized_failed.json", delivery.provider_message_id)).encode()
        headers = self.telnyx.signed(finalized)

        first = self.post_webhook(STATUS_URL, finalized, headers=headers)
        after_first = Delivery.objects.get(pk=delivery.pk)
        again = self.post_webhook(STATUS_URL, finalized, headers=headers)

        self.assertEqual((first.json(), again.json()), ({"updated": 1}, {"updated": 0}))
        after_again = Delivery.objects.get(pk=delivery.pk)
        self.assertEqual(
            (after_again.status, after_again.error_code, after_again.updated_at),
            (after_first.status, after_first.error_code, after_first.updated_at),
        )
