"""A real Celery worker process sends the deliveries (the scaled mode).

The test process enqueues through the broker (``ROOMKIT_TASK_MODE="celery"``);
a ``celery worker`` subprocess on the same Redis and the same test database
picks the task up and POSTs the signed delivery to a fake provider server.
"""

from __future__ import annotations

import time
import unittest
import uuid

from django.conf import settings
from django.test import TransactionTestCase, override_settings

from channels_app.signing import SIGNATURE_HEADER, sign
from rooms.inbound import InboundMessage, process_inbound
from rooms.models import ChannelBinding, Delivery, Room
from tests.concurrency.processes import VENV_BIN, child_env, start_child
from tests.support import FakeHTTPServer, make_channel

SECRET = "celery-secret"


@unittest.skipUnless(settings.REDIS_URL, "needs REDIS_URL: Celery workers use Redis as their broker (scaled-mode pass)")
class CeleryWorkerDeliveryTest(TransactionTestCase):
    def test_worker_process_sends_signed_delivery(self):
        fake = FakeHTTPServer(default=(200, {"id": "partner-77"}, {}))
        fake.__enter__()
        self.addCleanup(fake.__exit__, None, None, None)

        # Unique ids: circuit-breaker and rate-limit state live in Redis across runs.
        suffix = uuid.uuid4().hex[:8]
        out = make_channel(f"partner-{suffix}", config={"url": fake.url + "/inbox"}, secrets={"signing_secret": SECRET})
        src = make_channel(f"sms-{suffix}", channel_type="sms", secrets={"signing_secret": "x"})
        room = Room.objects.create()
        ChannelBinding.objects.create(room=room, channel=src, address="+15550111")
        ChannelBinding.objects.create(room=room, channel=out, address="partner-user-9")

        worker = start_child(
            self,
            [
                str(VENV_BIN / "celery"),
                "-A",
                "roomkit_project",
                "worker",
                "-Q",
                "default,deliveries,ai",
                "--pool=solo",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                f"rk-test-{suffix}@%h",
            ],
            child_env(ROOMKIT_TASK_MODE="celery"),
            name="celery-worker",
        )

        with override_settings(ROOMKIT_TASK_MODE="celery"):
            result = process_inbound(
                InboundMessage(channel_id=src.id, sender="+15550111", text="to the partner", provider_message_id="m1")
            )
        self.assertEqual(result.status, "stored")
        self.assertEqual(result.deliveries, 1)
        delivery = Delivery.objects.get(event_id=result.event_id)
        self.assertEqual(delivery.recipient, "partner-user-9")

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            delivery.refresh_from_db()
            if delivery.status != "pending" and delivery.status != "sending":
                break
            if worker.proc.poll() is not None:
                self.fail(f"celery worker exited with {worker.proc.returncode}:\n{worker.output()}")
            time.sleep(0.2)
        self.assertEqual(delivery.status, "sent", f"delivery {delivery.status} {delivery.last_error}\n{worker.output()}")
        self.assertEqual(delivery.attempts, 1)
        self.assertEqual(delivery.provider_message_id, "partner-77")
        self.assertIsNotNone(delivery.sent_at)

        self.assertEqual(len(fake.requests), 1)
        req = fake.requests[0]
        self.assertEqual((req.method, req.path), ("POST", "/inbox"))
        headers = {k.lower(): v for k, v in req.headers.items()}
        self.assertEqual(headers[SIGNATURE_HEADER.lower()], sign(req.body, SECRET))
        self.assertEqual(
            req.json(),
            {
                "event_id": result.event_id,
                "room_id": room.id,
                "seq": 1,
                "recipient": "partner-user-9",
                "text": "to the partner",
                "content": {"type": "text", "body": "to the partner"},
            },
        )
