"""Sinch SMS inbound: ``POST /webhooks/<channel_id>/`` with Sinch's MO callbacks, HMAC-signed.

Payloads are Sinch's documented ones (``fixtures/sinch/``, sources in its
SOURCES.md); every request is signed for real (HMAC-SHA256 over
``body.nonce.timestamp``), checked against the SDK's published test vector,
and goes through django.test.Client (middleware, URL conf, the real view).
A refused request must store nothing.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.core.cache import caches
from django.test import SimpleTestCase, TestCase, override_settings

from channels_app.providers import expiring_keys
from channels_app.providers.sinch import SIGNATURE_WINDOW_SECONDS, sinch_signature
from rooms.models import RoomEvent
from tests.channels_app.helpers import error_of, row_counts
from tests.support import make_channel

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "sinch"
SECRET = "sinch-webhook-secret-5d1"
URL = "/webhooks/sinch-sms/"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def sinch_headers(body: bytes, secret: str, *, nonce: str | None = None, timestamp: int | None = None) -> dict[str, str]:
    """The four headers Sinch sends with a signed callback, as Django test-client extras."""
    nonce = nonce or uuid.uuid4().hex
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "HTTP_X_SINCH_WEBHOOK_SIGNATURE": sinch_signature(body, nonce, ts, secret),
        "HTTP_X_SINCH_WEBHOOK_SIGNATURE_NONCE": nonce,
        "HTTP_X_SINCH_WEBHOOK_SIGNATURE_TIMESTAMP": ts,
        "HTTP_X_SINCH_WEBHOOK_SIGNATURE_ALGORITHM": "HmacSHA256",
    }


class SignatureVectorTests(SimpleTestCase):
    def test_our_signature_matches_the_sinch_sdk_test_vector(self) -> None:
        vector = fixture("signed_callback_sdk_vector.json")
        headers = vector["headers"]

        ours = sinch_signature(
            vector["body"].encode(),
            headers["x-sinch-webhook-signature-nonce"],
            headers["x-sinch-webhook-signature-timestamp"],
            vector["secret"],
        )

        self.assertEqual(ours, headers["x-sinch-webhook-signature"])


class SinchInboundTestCase(TestCase):
    def setUp(self) -> None:
        self.channel = make_channel(
            "sinch-sms",
            channel_type="sms",
            provider="sinch",
            config={"service_plan_id": "plan-1", "from": "+12017777777"},
            secrets={"api_token": "tok", "webhook_secret": SECRET},
        )

    def post(self, payload, *, secret: str = SECRET, path: str = URL, drop: tuple[str, ...] = (), **sign):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = sinch_headers(body, secret, **sign)
        for name in drop:
            headers.pop(name)
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post(path, data=body, content_type="application/json", **headers)

    def assertRefused(self, response, before: dict[str, int], status: int = 403, code: str | None = "invalid_signature") -> None:
        error_of(self, response, status, code)
        self.assertEqual(row_counts(), before, "a refused request must store nothing")


class AcceptedTests(SinchInboundTestCase):
    def test_documented_mo_text_is_stored_with_an_e164_sender_and_the_raw_payload(self) -> None:
        payload = fixture("mo_text.json")

        r = self.post(payload)

        self.assertEqual(r.status_code, 200, r.content)
        body = r.json()
        self.assertEqual((body["duplicate"], body["seq"]), (False, 1))
        event = RoomEvent.objects.get(pk=body["event_id"])
        self.assertEqual(event.content, {"type": "text", "body": "Hello John! 👋"})
        self.assertEqual(event.provider_message_id, "01W4FFL35P4NC4K35SMSBATCH8")
        self.assertEqual(event.source_participant.address, "+12015555555")
        self.assertEqual(event.metadata["raw"], payload)

    def test_a_timestamp_inside_the_window_is_accepted(self) -> None:
        r = self.post(fixture("mo_text.json"), timestamp=int(time.time()) - SIGNATURE_WINDOW_SECONDS + 10)

        self.assertEqual(r.status_code, 200, r.content)

    def test_the_algorithm_header_may_be_absent(self) -> None:
        r = self.post(fixture("mo_text.json"), drop=("HTTP_X_SINCH_WEBHOOK_SIGNATURE_ALGORITHM",))

        self.assertEqual(r.status_code, 200, r.content)

    def test_a_repeated_mo_id_is_one_event_and_still_answers_2xx(self) -> None:
        first = self.post(fixture("mo_text.json")).json()
        before = row_counts()

        # Sinch retrying: a new signature and nonce, the same MO id.
        again = self.post(fixture("mo_text.json"))

        self.assertEqual(again.status_code, 200, again.content)
        self.assertEqual((again.json()["duplicate"], again.json()["event_id"]), (True, first["event_id"]))
        self.assertEqual(row_counts(), before)
        self.assertEqual(RoomEvent.objects.filter(provider_message_id="01W4FFL35P4NC4K35SMSBATCH8").count(), 1)

    def test_binary_mo_is_described_and_keeps_its_bytes_in_raw(self) -> None:
        payload = fixture("mo_binary.json")

        body = self.post(payload).json()

        event = RoomEvent.objects.get(pk=body["event_id"])
        self.assertEqual(event.content, {"type": "text", "body": "[Binary SMS, 8 bytes]"})
        self.assertEqual(base64.b64decode(event.metadata["raw"]["body"]), bytes([1, 2, 3, 4, 0xFF, 0xFE, 0xFD, 0xFC]))

    def test_binary_mo_that_is_text_shows_the_text(self) -> None:
        payload = {**fixture("mo_binary.json"), "id": "bin-text", "body": base64.b64encode("où est-il?".encode()).decode()}

        body = self.post(payload).json()

        self.assertEqual(RoomEvent.objects.get(pk=body["event_id"]).content, {"type": "text", "body": "où est-il?"})

    def test_mms_keeps_the_vendor_media_url_with_subject_and_message_as_caption(self) -> None:
        body = self.post(fixture("mo_media.json")).json()

        self.assertEqual(
            RoomEvent.objects.get(pk=body["event_id"]).content,
            {
                "type": "media",
                "url": "https://mms.api.sinch.com/media/01W4FFL35P4NC4K35SMSMMS001/photo.jpg",
                "mime_type": "image/jpeg",
                "caption": "Receipt\nHere is the photo",
            },
        )

    def test_mms_with_several_items_is_composite_and_skips_failed_uploads(self) -> None:
        payload = fixture("mo_media.json")
        media = payload["body"]["media"]
        payload["body"]["media"] = [
            *media,
            {"url": "https://mms.api.sinch.com/media/x/clip.mp4", "content_type": "video/mp4", "status": "Uploaded", "code": 0},
            {"url": "https://mms.api.sinch.com/media/x/lost.png", "content_type": "image/png", "status": "Failed", "code": 5},
        ]

        body = self.post(payload).json()

        content = RoomEvent.objects.get(pk=body["event_id"]).content
        self.assertEqual(content["type"], "composite")
        self.assertEqual([p["type"] for p in content["parts"]], ["text", "media", "media"])
        self.assertNotIn("lost.png", json.dumps(content))

    def test_a_delivery_report_on_the_inbound_url_stores_nothing_and_answers_2xx(self) -> None:
        before = row_counts()

        r = self.post(fixture("recipient_delivery_report_delivered.json"))

        self.assertEqual((r.status_code, r.json()), (200, {"ignored": "recipient_delivery_report_sms"}))
        self.assertEqual(row_counts(), before)


class RefusedSignatureTests(SinchInboundTestCase):
    def test_each_missing_header_is_403_and_stores_nothing(self) -> None:
        for header in (
            "HTTP_X_SINCH_WEBHOOK_SIGNATURE",
            "HTTP_X_SINCH_WEBHOOK_SIGNATURE_NONCE",
            "HTTP_X_SINCH_WEBHOOK_SIGNATURE_TIMESTAMP",
        ):
            with self.subTest(missing=header):
                before = row_counts()
                self.assertRefused(self.post(fixture("mo_text.json"), drop=(header,)), before)

    def test_wrong_secret_is_403_and_stores_nothing(self) -> None:
        before = row_counts()

        self.assertRefused(self.post(fixture("mo_text.json"), secret="not-the-secret"), before)

    def test_a_body_changed_after_signing_is_403(self) -> None:
        signed = json.dumps(fixture("mo_text.json")).encode()
        headers = sinch_headers(signed, SECRET)
        tampered = signed.replace(b"Hello John", b"Hello Jane")
        before = row_counts()

        r = self.client.post(URL, data=tampered, content_type="application/json", **headers)

        self.assertRefused(r, before)

    def test_stale_and_future_timestamps_are_403(self) -> None:
        now = int(time.time())
        for label, ts in (("stale", now - SIGNATURE_WINDOW_SECONDS - 5), ("future", now + SIGNATURE_WINDOW_SECONDS + 5)):
            with self.subTest(label):
                before = row_counts()
                self.assertRefused(self.post(fixture("mo_text.json"), timestamp=ts), before)

    def test_a_timestamp_that_is_not_seconds_is_403(self) -> None:
        body = json.dumps(fixture("mo_text.json")).encode()
        headers = sinch_headers(body, SECRET)
        nonce = headers["HTTP_X_SINCH_WEBHOOK_SIGNATURE_NONCE"]
        iso = "2024-06-06T07:52:37Z"
        headers |= {
            "HTTP_X_SINCH_WEBHOOK_SIGNATURE_TIMESTAMP": iso,
            "HTTP_X_SINCH_WEBHOOK_SIGNATURE": sinch_signature(body, nonce, iso, SECRET),
        }
        before = row_counts()

        self.assertRefused(self.client.post(URL, data=body, content_type="application/json", **headers), before)

    def test_another_algorithm_is_403(self) -> None:
        body = json.dumps(fixture("mo_text.json")).encode()
        headers = sinch_headers(body, SECRET) | {"HTTP_X_SINCH_WEBHOOK_SIGNATURE_ALGORITHM": "HmacSHA1"}
        before = row_counts()

        self.assertRefused(self.client.post(URL, data=body, content_type="application/json", **headers), before)

    def test_a_replayed_request_is_403_the_second_time(self) -> None:
        body = json.dumps(fixture("mo_text.json")).encode()
        headers = sinch_headers(body, SECRET)
        with self.captureOnCommitCallbacks(execute=True):
            first = self.client.post(URL, data=body, content_type="application/json", **headers)
        self.assertEqual(first.status_code, 200, first.content)
        before = row_counts()

        again = self.client.post(URL, data=body, content_type="application/json", **headers)

        self.assertRefused(again, before)

    def test_a_seen_nonce_is_403_even_on_a_new_body_and_signature(self) -> None:
        nonce = uuid.uuid4().hex
        self.assertEqual(self.post(fixture("mo_text.json"), nonce=nonce).status_code, 200)
        other = {**fixture("mo_text.json"), "id": "01W4FFL35P4NC4K35SMSOTHER1", "body": "second"}
        before = row_counts()

        self.assertRefused(self.post(other, nonce=nonce), before)

    def test_a_channel_without_webhook_secret_refuses_everything(self) -> None:
        make_channel(
            "sinch-nosecret",
            channel_type="sms",
            provider="sinch",
            config={"service_plan_id": "plan-1", "from": "+12017777777"},
            secrets={"api_token": "tok"},
        )
        before = row_counts()

        self.assertRefused(self.post(fixture("mo_text.json"), path="/webhooks/sinch-nosecret/", secret=""), before)

    def test_the_status_url_checks_the_same_signature(self) -> None:
        r = self.post(fixture("recipient_delivery_report_delivered.json"), path=URL + "status/", secret="wrong")

        error_of(self, r, 403, "invalid_signature")


class BadPayloadTests(SinchInboundTestCase):
    """Signed, but wrong: a clear 400 and nothing stored (never a 500)."""

    def test_bad_payloads_are_400(self) -> None:
        mo = fixture("mo_text.json")
        cases = {
            "not json": b"{not json",
            "not an object": b"[1, 2]",
            "no type": {k: v for k, v in mo.items() if k != "type"},
            "unknown type": {**mo, "type": "mo_hologram"},
            "no id": {k: v for k, v in mo.items() if k != "id"},
            "no from": {k: v for k, v in mo.items() if k != "from"},
            "body not text": {**mo, "body": {"text": "x"}},
            "binary not base64": {**fixture("mo_binary.json"), "body": "***"},
            "media body not an object": {**fixture("mo_media.json"), "body": "x"},
            "media with nothing in it": {**fixture("mo_media.json"), "body": {"media": []}},
        }
        for label, payload in cases.items():
            with self.subTest(label):
                before = row_counts()
                r = self.post(payload)
                self.assertRefused(r, before, status=400, code=None)


class NonceStoreTests(SinchInboundTestCase):
    def test_with_redis_the_nonce_is_kept_where_every_process_sees_it(self) -> None:
        if not settings.REDIS_URL:
            self.skipTest("REDIS_URL is not set: the in-process store is the only one")
        import redis

        nonce = uuid.uuid4().hex
        self.assertEqual(self.post(fixture("mo_text.json"), nonce=nonce).status_code, 200)

        r = redis.Redis.from_url(settings.REDIS_URL)
        key = f"roomkit:ek:sinch-nonce:sinch-sms:{nonce}"
        self.assertEqual(r.get(key), b"1")
        self.assertGreater(r.ttl(key), SIGNATURE_WINDOW_SECONDS)


class ExpiringKeysTests(SimpleTestCase):
    """The store behind nonce replay protection, on each of its backends."""

    @override_settings(REDIS_URL="")
    def test_the_in_process_store_keeps_every_live_key_and_forgets_expired_ones(self) -> None:
        keys = [f"t-{uuid.uuid4().hex}" for _ in range(5000)]
        self.assertTrue(all(expiring_keys.claim_once(k, 60) for k in keys))

        # Django's default LocMem cache would have evicted most of these (MAX_ENTRIES=300).
        self.assertFalse(any(expiring_keys.claim_once(k, 60) for k in keys))
        short = f"t-{uuid.uuid4().hex}"
        self.assertTrue(expiring_keys.claim_once(short, 0.05))
        time.sleep(0.1)
        self.assertTrue(expiring_keys.claim_once(short, 0.05))

    @override_settings(REDIS_URL="")
    def test_notes_in_process(self) -> None:
        key = f"n-{uuid.uuid4().hex}"
        self.assertIsNone(expiring_keys.read_note(key))
        expiring_keys.note(key, "hash-1", 60)
        self.assertEqual(expiring_keys.read_note(key), "hash-1")

    @override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "ek-test"}})
    def test_a_configured_cache_is_used_when_there_is_one(self) -> None:
        key = f"c-{uuid.uuid4().hex}"
        self.assertTrue(expiring_keys.claim_once(key, 60))
        self.assertFalse(expiring_keys.claim_once(key, 60))
        self.assertEqual(caches["default"].get("roomkit:ek:" + key), "1")
        expiring_keys.note(key + "-n", "v", 60)
        self.assertEqual(expiring_keys.read_note(key + "-n"), "v")

    def test_with_redis_claims_are_shared_through_redis(self) -> None:
        if not settings.REDIS_URL:
            self.skipTest("REDIS_URL is not set")
        import redis

        key = f"r-{uuid.uuid4().hex}"
        self.assertTrue(expiring_keys.claim_once(key, 60))
        self.assertFalse(expiring_keys.claim_once(key, 60))
        self.assertEqual(redis.Redis.from_url(settings.REDIS_URL).get("roomkit:ek:" + key), b"1")
