"""Delivery-status callbacks of the HTTP channel: ``POST /webhooks/<channel_id>/status/``.

A delivery is first really sent to a FakeHTTPServer that answers with its own
message id; the receiver then reports on it, signed with the channel secret.
Status only moves forward (sent → delivered → read), never back.
"""

from __future__ import annotations

import itertools

from django.test import TestCase

from channels_app import resilience
from rooms.models import Delivery
from rooms.services import channel_attach
from tests.channels_app.helpers import error_of
from tests.support import FakeHTTPServer, make_channel, post_signed

IN_SECRET = "in-secret"
OUT_SECRET = "out-secret"
STATUS_URL = "/webhooks/hook-out/status/"


class StatusCallbackTests(TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.server = cls.enterClassContext(FakeHTTPServer())

    def setUp(self) -> None:
        resilience.reset_all()
        self.addCleanup(resilience.reset_all)
        numbers = itertools.count(1)
        self.server.requests.clear()
        self.server.handler = lambda req: (200, {"id": f"vendor-{next(numbers)}"}, {})
        make_channel("hook-in", secrets={"signing_secret": IN_SECRET})
        make_channel("hook-out", config={"url": self.server.url + "/hook"}, secrets={"signing_secret": OUT_SECRET})
        self.room_id = self._inbound("m-0", "opening")["room_id"]
        channel_attach(room_id=self.room_id, channel_id="hook-out", address="crm-1")
        self.delivery = self._delivery(self._inbound("m-1", "hello")["event_id"])
        self.assertEqual((self.delivery.status, self.delivery.provider_message_id), ("sent", "vendor-1"))

    def _inbound(self, message_id: str, text: str) -> dict:
        with self.captureOnCommitCallbacks(execute=True):
            r = post_signed(self.client, "/webhooks/hook-in/", {"id": message_id, "sender": "alice", "text": text}, IN_SECRET)
        self.assertEqual(r.status_code, 200, r.content)
        return r.json()

    def _delivery(self, event_id: str) -> Delivery:
        return Delivery.objects.get(event_id=event_id, channel_id="hook-out")

    def report(self, payload, *, secret: str | None = OUT_SECRET, path: str = STATUS_URL, **extra):
        with self.captureOnCommitCallbacks(execute=True):
            return post_signed(self.client, path, payload, secret, **extra)

    def status(self) -> str:
        return Delivery.objects.get(pk=self.delivery.pk).status

    def test_status_moves_forward(self) -> None:
        r = self.report({"provider_message_id": "vendor-1", "status": "delivered"})
        self.assertEqual((r.status_code, r.json()), (200, {"updated": 1}))
        self.assertEqual(self.status(), "delivered")

        r = self.report({"provider_message_id": "vendor-1", "status": "read"})
        self.assertEqual(r.json(), {"updated": 1})
        self.assertEqual(self.status(), "read")

    def test_status_never_moves_back(self) -> None:
        self.report({"provider_message_id": "vendor-1", "status": "read"})

        for late in ("delivered", "sent", "pending", "sending"):
            with self.subTest(status=late):
                r = self.report({"provider_message_id": "vendor-1", "status": late})
                self.assertEqual((r.status_code, r.json()), (200, {"updated": 0}))
                self.assertEqual(self.status(), "read")

    def test_a_repeated_callback_changes_nothing_the_second_time(self) -> None:
        first = self.report({"provider_message_id": "vendor-1", "status": "delivered"}).json()
        second = self.report({"provider_message_id": "vendor-1", "status": "delivered"}).json()

        self.assertEqual((first, second), ({"updated": 1}, {"updated": 0}))

    def test_failure_report_records_the_error(self) -> None:
        r = self.report({"provider_message_id": "vendor-1", "status": "failed", "error": "handset unreachable"})

        self.assertEqual(r.json(), {"updated": 1})
        delivery = Delivery.objects.get(pk=self.delivery.pk)
        self.assertEqual((delivery.status, delivery.last_error), ("failed", "handset unreachable"))

    def test_only_the_named_delivery_changes(self) -> None:
        other = self._delivery(self._inbound("m-2", "second")["event_id"])
        self.assertEqual(other.provider_message_id, "vendor-2")

        self.report({"provider_message_id": "vendor-2", "status": "delivered"})

        self.assertEqual(self.status(), "sent")
        self.assertEqual(Delivery.objects.get(pk=other.pk).status, "delivered")

    def test_unknown_message_id_updates_nothing(self) -> None:
        r = self.report({"provider_message_id": "vendor-999", "status": "delivered"})

        self.assertEqual((r.status_code, r.json()), (200, {"updated": 0}))
        self.assertEqual(self.status(), "sent")

    def test_another_channel_cannot_report_on_this_channels_deliveries(self) -> None:
        make_channel("hook-other", secrets={"signing_secret": "other"})

        r = self.report(
            {"provider_message_id": "vendor-1", "status": "read"}, secret="other", path="/webhooks/hook-other/status/"
        )

        self.assertEqual(r.json(), {"updated": 0})
        self.assertEqual(self.status(), "sent")

    def test_bad_or_missing_signature_is_403_and_changes_nothing(self) -> None:
        for secret in (None, "wrong", IN_SECRET):
            with self.subTest(secret=secret):
                r = self.report({"provider_message_id": "vendor-1", "status": "read"}, secret=secret)
                error_of(self, r, 403, "invalid_signature")
                self.assertEqual(self.status(), "sent")

    def test_bad_payloads_are_4xx_and_change_nothing(self) -> None:
        cases = [
            ({"status": "delivered"}, {}, 400, "missing_field"),
            ({"provider_message_id": "", "status": "delivered"}, {}, 400, "invalid_field"),
            ({"provider_message_id": "vendor-1"}, {}, 400, "missing_field"),
            ({"provider_message_id": "vendor-1", "status": "exploded"}, {}, 400, "invalid_field"),
            ({"provider_message_id": ["vendor-1"], "status": "read"}, {}, 400, "invalid_field"),
            ([{"provider_message_id": "vendor-1", "status": "read"}], {}, 400, "malformed_json"),
            (b"{nope", {}, 400, "malformed_json"),
            (
                {"provider_message_id": "vendor-1", "status": "read"},
                {"content_type": "text/plain"},
                415,
                "unsupported_media_type",
            ),
        ]
        for payload, extra, status, code in cases:
            with self.subTest(payload=payload, **extra):
                error_of(self, self.report(payload, **extra), status, code)
                self.assertEqual(self.status(), "sent")

    def test_unknown_channel_is_404_json(self) -> None:
        r = self.report({"provider_message_id": "vendor-1", "status": "read"}, path="/webhooks/nope/status/")

        error_of(self, r, 404, "unknown_channel")
