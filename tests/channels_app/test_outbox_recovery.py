"""The outbox's recovery settings, on any database and broker.

- ``ROOMKIT_DELIVERY_STUCK_SECONDS``: ``sweep_outbox`` releases a delivery left
  in ``sending`` longer than this (the state a worker killed mid-send leaves)
  and it is sent again; a younger one is left alone, its worker may still be
  sending. One whose attempts were all lost that way (a message that kills
  its worker) ends a dead letter instead of going round forever.
- A retry whose wait is beyond half the broker's visibility timeout
  (``ROOMKIT_CELERY_VISIBILITY_TIMEOUT``) is not handed to the broker as a
  countdown: the row's ``next_attempt_at`` holds it and the sweeper enqueues
  it when due. A shorter one is published at once, with its countdown.

The real worker processes, kills and redeliveries: tests.concurrency.test_delivery_faults.
"""

from __future__ import annotations

from datetime import timedelta

from django.test import TestCase, override_settings
from django.utils import timezone

from channels_app import resilience
from channels_app.services import delivery_attempt, sweep_outbox
from roomkit_project.celery import app as celery_app
from rooms.enums import DeliveryStatus
from rooms.inbound import InboundMessage, process_inbound
from rooms.models import ChannelBinding, Delivery, Room
from tests.support import FakeHTTPServer, make_channel


def _deliveries_queued() -> int:
    """Messages waiting in the broker's ``deliveries`` queue (memory:// or Redis, as configured)."""
    with celery_app.connection_for_write() as conn:
        return conn.default_channel.queue_declare(queue="deliveries").message_count


def _purge_deliveries() -> None:
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_declare(queue="deliveries")
        conn.default_channel.queue_purge("deliveries")


class OutboxRecoveryTestCase(TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.vendor = cls.enterClassContext(FakeHTTPServer())

    def setUp(self) -> None:
        resilience.reset_all()
        self.addCleanup(resilience.reset_all)
        self.vendor.requests.clear()
        self.vendor.responses = []
        out = make_channel(
            "out-recovery",
            config={"url": self.vendor.url + "/in", "retry": {"max_retries": 3, "max_delay_seconds": 1000}},
            secrets={"signing_secret": "s"},
        )
        self.source = make_channel("src-recovery", secrets={"signing_secret": "s"})
        room = Room.objects.create()
        ChannelBinding.objects.create(room=room, channel=self.source, address="+15550001")
        ChannelBinding.objects.create(room=room, channel=out, address="partner-1")

    def plan(self) -> Delivery:
        """One delivery planned and left pending (nothing runs it)."""
        with override_settings(ROOMKIT_TASK_MODE="off"):
            result = process_inbound(
                InboundMessage(channel_id=self.source.id, sender="+15550001", text="hello", provider_message_id="r1")
            )
        return Delivery.objects.get(event_id=result.event_id)

    @override_settings(ROOMKIT_DELIVERY_STUCK_SECONDS=30)
    def test_a_delivery_stuck_in_sending_is_released_after_the_configured_seconds(self) -> None:
        delivery = self.plan()
        # What a worker killed after its claim leaves behind: 'sending', one attempt counted.
        claimed_at = timezone.now() - timedelta(seconds=25)
        Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.SENDING, attempts=1, updated_at=claimed_at)

        with self.captureOnCommitCallbacks(execute=True):
            self.assertEqual(sweep_outbox(), 0)
        self.assertEqual(Delivery.objects.get(pk=delivery.pk).status, DeliveryStatus.SENDING, "25 s < 30 s: maybe still sending")
        self.assertEqual(self.vendor.requests, [])

        # Six seconds later (the claim moved back rather than the clock forward: the release is due now).
        Delivery.objects.filter(pk=delivery.pk).update(updated_at=claimed_at - timedelta(seconds=6))
        with self.captureOnCommitCallbacks(execute=True), self.assertLogs("channels_app.services", "WARNING") as logs:
            self.assertEqual(sweep_outbox(), 1)
        self.assertIn("released 1 deliveries stuck in 'sending'", "\n".join(logs.output))
        delivery.refresh_from_db()
        # Released and (inline task mode) sent again at once: the lost attempt still counts.
        self.assertEqual((delivery.status, delivery.attempts, delivery.last_error), (DeliveryStatus.SENT, 2, ""))
        self.assertEqual(len(self.vendor.requests), 1)

    @override_settings(ROOMKIT_DELIVERY_STUCK_SECONDS=30)
    def test_a_delivery_whose_every_attempt_dies_with_its_worker_ends_a_dead_letter(self) -> None:
        delivery = self.plan()
        # max_retries 3: its 4th attempt, the last allowed, was lost with its worker too.
        stalled = timezone.now() - timedelta(seconds=31)
        Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.SENDING, attempts=4, updated_at=stalled)

        with self.captureOnCommitCallbacks(execute=True), self.assertLogs("channels_app.services", "WARNING"):
            self.assertEqual(sweep_outbox(), 1)

        delivery.refresh_from_db()
        self.assertEqual(delivery.status, DeliveryStatus.DEAD)
        self.assertIn("attempts lost with their workers", delivery.last_error)
        self.assertEqual(self.vendor.requests, [], "not sent a 5th time")

    @override_settings(ROOMKIT_TASK_MODE="celery", ROOMKIT_CELERY_VISIBILITY_TIMEOUT=600)
    def test_a_wait_beyond_half_the_visibility_timeout_is_left_to_the_sweeper(self) -> None:
        _purge_deliveries()
        self.addCleanup(_purge_deliveries)
        delivery = self.plan()
        self.vendor.responses = [(429, {"error": "slow down"}, {"Retry-After": "400"})]

        self.assertEqual(delivery_attempt(delivery_id=delivery.pk), DeliveryStatus.PENDING)

        delivery.refresh_from_db()
        wait = (delivery.next_attempt_at - timezone.now()).total_seconds()
        self.assertTrue(395 < wait <= 400, wait)
        self.assertEqual(_deliveries_queued(), 0, "400 s > 600 s / 2: not held by a worker as a countdown")
        self.assertEqual(sweep_outbox(now=timezone.now() + timedelta(seconds=300)), 0, "not due yet")
        self.assertEqual(_deliveries_queued(), 0)
        self.assertEqual(sweep_outbox(now=timezone.now() + timedelta(seconds=401)), 1)
        self.assertEqual(_deliveries_queued(), 1, "due: the sweeper enqueues it")

    @override_settings(ROOMKIT_TASK_MODE="celery", ROOMKIT_CELERY_VISIBILITY_TIMEOUT=600)
    def test_a_shorter_wait_goes_to_the_broker_as_a_countdown(self) -> None:
        _purge_deliveries()
        self.addCleanup(_purge_deliveries)
        delivery = self.plan()
        self.vendor.responses = [(429, {"error": "slow down"}, {"Retry-After": "200"})]

        self.assertEqual(delivery_attempt(delivery_id=delivery.pk), DeliveryStatus.PENDING)

        self.assertEqual(_deliveries_queued(), 1)
        with celery_app.connection_for_write() as conn:
            message = conn.default_channel.basic_get("deliveries", no_ack=True)
        self.assertEqual(message.headers["task"], "channels_app.tasks.deliver_event_task")
        self.assertEqual(message.decode()[0], [delivery.pk])
        self.assertIsNotNone(message.headers["eta"])
