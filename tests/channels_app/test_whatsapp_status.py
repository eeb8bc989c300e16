"""WhatsApp statuses (``sent``, ``delivered``, ``read``, ``failed`` with Meta's error codes) move deliveries forward.

Meta posts statuses to the channel's one webhook URL, signed like messages;
the documented ``statuses[]`` payloads (fixtures/whatsapp) name the ``wamid``
the send answered. A late or repeated status never moves a delivery back.
"""

from __future__ import annotations

from rooms.enums import DeliveryStatus
from rooms.models import Delivery
from tests.channels_app.helpers import error_of, row_counts
from tests.channels_app.test_whatsapp_support import WhatsAppTestCase


class StatusTests(WhatsAppTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.room_id = self.customer_writes("hi")
        self.delivery = self.say(self.room_id, "Your order shipped")
        self.assertEqual(self.delivery.status, DeliveryStatus.QUEUED, self.delivery.last_error)
        self.wamid = self.delivery.provider_message_id

    def status(self) -> Delivery:
        return Delivery.objects.get(pk=self.delivery.pk)

    def test_sent_delivered_read_in_order(self) -> None:
        for name, expected in (
            ("status_sent.json", DeliveryStatus.SENT),
            ("status_delivered.json", DeliveryStatus.DELIVERED),
            ("status_read.json", DeliveryStatus.READ),
        ):
            with self.subTest(name):
                r = self.post_webhook(self.status_webhook(name, self.wamid))
                self.assertEqual((r.status_code, r.json()), (200, {"updated": 1}))
                self.assertEqual(self.status().status, expected)

    def test_a_late_or_repeated_status_never_moves_it_back(self) -> None:
        self.post_webhook(self.status_webhook("status_read.json", self.wamid))

        for name in ("status_delivered.json", "status_sent.json", "status_read.json"):
            r = self.post_webhook(self.status_webhook(name, self.wamid))
            self.assertEqual(r.json(), {"updated": 0})
        self.assertEqual(self.status().status, DeliveryStatus.READ)

    def test_failed_carries_metas_error_code_and_words(self) -> None:
        self.post_webhook(self.status_webhook("status_sent.json", self.wamid))

        self.post_webhook(self.status_webhook("status_failed.json", self.wamid))

        delivery = self.status()
        self.assertEqual((delivery.status, delivery.error_code), (DeliveryStatus.FAILED, "131047"))
        self.assertIn("more than 24 hours have passed", delivery.last_error)

    def test_a_status_of_a_message_we_do_not_know_changes_nothing(self) -> None:
        before = row_counts()

        r = self.post_webhook(self.status_webhook("status_delivered.json", "wamid.SOMEONE-ELSES"))

        self.assertEqual((r.status_code, r.json()), (200, {"updated": 0}))
        self.assertEqual(row_counts(), before)
        self.assertEqual(self.status().status, DeliveryStatus.QUEUED)

    def test_an_unsigned_status_is_403_and_changes_nothing(self) -> None:
        error_of(self, self.post_webhook(self.status_webhook("status_read.json", self.wamid), headers={}), 403)

        self.assertEqual(self.status().status, DeliveryStatus.QUEUED)

    def test_a_status_we_do_not_track_is_acknowledged(self) -> None:
        r = self.post_webhook(self.status_webhook("status_sent.json", self.wamid, status="deleted"))

        self.assertEqual((r.status_code, r.json()), (200, {"ignored": True}))
        self.assertEqual(self.status().status, DeliveryStatus.QUEUED)
