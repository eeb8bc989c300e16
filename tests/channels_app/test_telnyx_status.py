"""Telnyx delivery status: ``message.sent`` and ``message.finalized`` events move a delivery forward.

A delivery is first really sent to the fake Telnyx API, which gives the
message its id; Telnyx's documented status events about that id are then
posted, signed, to the status URL (the ``webhook_url`` we send) or to the
inbound URL (where a messaging profile's URL sends every event). Status only
moves forward: a late ``message.sent`` after ``message.finalized`` changes
nothing, whichever URL it arrives on.
"""

from __future__ import annotations

import json

from django.test import RequestFactory

from channels_app.providers import InboundParse, get_provider
from rooms.models import Channel, Delivery
from tests.channels_app.fakes.telnyx import fixture
from tests.channels_app.helpers import row_counts
from tests.channels_app.test_telnyx_support import TelnyxTestCase

STATUS_URL = "/webhooks/tx-sms/status/"
INBOUND_URL = "/webhooks/tx-sms/"


class StatusEventTests(TelnyxTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.make_telnyx_channel()
        self.open_room()
        self.delivery = self.say("hello")
        self.message_id = self.delivery.provider_message_id
        self.assertEqual(self.delivery.status, "queued")
        self.assertIn(self.message_id, self.telnyx.messages)

    def report(self, name: str, *, url: str = STATUS_URL, message_id: str | None = None, **kw):
        r = self.post_webhook(url, self.status_event(name, message_id or self.message_id, **kw))
        self.assertEqual(r.status_code, 200, r.content)
        return r.json()

    def row(self) -> Delivery:
        return Delivery.objects.get(pk=self.delivery.pk)

    def test_sent_then_finalized_move_the_row_forward(self) -> None:
        # The documented message.sent example still reads "queued" for its recipient: the event says sent.
        self.assertEqual(self.report("message_sent.json"), {"updated": 1})
        self.assertEqual(self.row().status, "sent")

        self.assertEqual(self.report("message_finalized.json"), {"updated": 1})
        row = self.row()
        self.assertEqual((row.status, row.error_code, row.last_error), ("delivered", "", ""))

    def test_a_late_sent_after_finalized_changes_nothing(self) -> None:
        self.report("message_finalized.json")
        delivered = self.row()

        for url in (STATUS_URL, INBOUND_URL):
            with self.subTest(url=url):
                self.assertEqual(self.report("message_sent.json", url=url, status="sent"), {"updated": 0})
                row = self.row()
                self.assertEqual((row.status, row.updated_at), ("delivered", delivered.updated_at))

    def test_the_recipients_statuses_map_to_ours(self) -> None:
        cases = {
            "sending": "queued",
            "sent": "sent",
            "delivered": "delivered",
            "delivery_unconfirmed": "sent",
            "delivery_failed": "undelivered",
            "expired": "undelivered",
            "sending_failed": "failed",
        }
        for vendor, ours in cases.items():
            with self.subTest(vendor=vendor):
                Delivery.objects.filter(pk=self.delivery.pk).update(status="pending")
                self.report("message_finalized.json", status=vendor)
                self.assertEqual(self.row().status, ours)

    def test_a_failed_delivery_records_telnyx_error(self) -> None:
        self.report("message_sent.json")

        self.assertEqual(self.report("message_finalized_failed.json"), {"updated": 1})

        row = self.row()
        self.assertEqual((row.status, row.error_code), ("undelivered", "40008"))
        self.assertIn("Undeliverable", row.last_error)
        self.assertIn("did not accept", row.last_error)

    def test_status_events_on_the_inbound_url_apply_too_and_store_no_message(self) -> None:
        before = row_counts()

        self.assertEqual(self.report("message_sent.json", url=INBOUND_URL), {"updated": 1})
        self.assertEqual(self.report("message_finalized.json", url=INBOUND_URL), {"updated": 1})

        self.assertEqual(self.row().status, "delivered")
        self.assertEqual(row_counts(), before)

    def test_the_adapter_only_reads_either_url_and_the_view_stores(self) -> None:
        provider = get_provider("telnyx")
        channel = Channel.objects.get(pk="tx-sms")

        def request(payload: dict):
            return RequestFactory().post(STATUS_URL, data=json.dumps(payload), content_type="application/json")

        before = row_counts()

        status = provider.parse_inbound(channel, request(self.status_event("message_finalized.json", self.message_id)))
        message = provider.parse_status(channel, request(fixture("inbound_sms.json")))

        self.assertEqual((row_counts(), self.row().status), (before, "queued"), "parsing writes nothing")
        self.assertEqual(
            (status.messages, [(u.provider_message_id, u.status) for u in status.status_updates], status.response),
            ([], [(self.message_id, "delivered")], None),
        )
        self.assertIsInstance(message, InboundParse)
        self.assertEqual(
            ([m.provider_message_id for m in message.messages], message.status_updates),
            (["7ee4241c-f127-47e5-9c34-3aac291f8058"], []),
        )

    def test_an_unknown_message_id_or_status_changes_nothing(self) -> None:
        self.assertEqual(self.report("message_finalized.json", message_id="00000000-0000-0000-0000-0000000000ff"), {"updated": 0})
        self.assertEqual(self.report("message_finalized.json", status="a_status_telnyx_adds_later"), {"updated": 0})
        self.assertEqual(self.row().status, "queued")

    def test_another_channel_cannot_report_on_this_channels_deliveries(self) -> None:
        self.make_telnyx_channel("tx-other")

        self.assertEqual(self.report("message_finalized.json", url="/webhooks/tx-other/status/"), {"updated": 0})

        self.assertEqual(self.row().status, "queued")

    def test_a_status_event_without_a_message_id_is_400(self) -> None:
        event = self.status_event("message_finalized.json", self.message_id)
        del event["data"]["payload"]["id"]

        r = self.post_webhook(STATUS_URL, event)

        self.assertEqual(r.status_code, 400, r.content)
        self.assertEqual(self.row().status, "queued")
