"""End to end on PostgreSQL + Redis with a real Celery worker: a Telegram chat meets the demo agent.

A signed update (the secret header) opens a room; the demo's scripted agent
(``seed_demo``, attached to every new room of the channel) answers in a
worker process; the answer's delivery reaches the fake Bot API (which checks
the token in the path and the body) and is marked sent with Telegram's
message_id (Telegram sends no delivery receipts: sent is its last word); the
room's console page shows the message, the answer and the delivery.
Skipped without the scaled mode, as ``tests/concurrency`` is.
"""

from __future__ import annotations

import json
import unittest
import uuid
from io import StringIO

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import TransactionTestCase, override_settings
from django.urls import reverse

from channels_app import resilience
from rooms.enums import DeliveryStatus, Direction
from rooms.models import Delivery, RoomEvent
from tests.channels_app.fakes.telegram import FakeTelegram, fixture
from tests.concurrency.celery_workers import (
    SKIP_REASON,
    purge_broker,
    scaled_mode_available,
    wait_ready,
    wait_until,
    worker_env,
)
from tests.concurrency.processes import VENV_BIN, quiet_logger, start_child
from tests.support import make_channel

SECRET = "scenario-secret_1"


@unittest.skipUnless(scaled_mode_available(), SKIP_REASON)
class TelegramScenarioTest(TransactionTestCase):
    def setUp(self) -> None:
        quiet_logger(self, "httpx")
        purge_broker()
        self.addCleanup(purge_broker)
        resilience.reset_all()
        self.telegram = FakeTelegram()
        self.telegram.__enter__()
        self.addCleanup(self.telegram.__exit__, None, None, None)

    def test_a_telegram_message_opens_a_room_the_demo_agent_answers_and_the_answer_is_sent(self) -> None:
        call_command("seed_demo", stdout=StringIO())
        channel_id = f"tg-{uuid.uuid4().hex[:8]}"  # breaker and rate state live in Redis: unique per run
        make_channel(
            channel_id,
            channel_type="telegram",
            provider="telegram",
            config={"api_base": self.telegram.url, "attach_on_create": ["triage", "specialist"]},
            secrets={"bot_token": self.telegram.token, "webhook_secret": SECRET},
        )
        # One worker on every queue the scenario needs: deliveries, hooks, and the agent's generation ("ai").
        worker = start_child(
            self,
            [
                str(VENV_BIN / "celery"),
                "-A",
                "roomkit_project",
                "worker",
                "-Q",
                "deliveries,default,ai",
                "--pool=threads",
                "-c",
                "2",
            ]
            + ["--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"{channel_id}@%h"],
            worker_env(),
            name="celery-worker",
        )
        wait_ready(worker)

        update = fixture("update_text.json")
        update["message"]["text"] = "Hi, where is my order 1003?"
        with override_settings(ROOMKIT_TASK_MODE="celery"):
            response = self.client.post(
                f"/webhooks/{channel_id}/",
                data=json.dumps(update),
                content_type="application/json",
                HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN=SECRET,
            )
        self.assertEqual(response.status_code, 200, response.content)
        room_id = response.json()["room_id"]

        def answered() -> bool:
            # The demo's triage hands an order question to the specialist, who answers it: both messages sent.
            deliveries = Delivery.objects.filter(channel_id=channel_id).select_related("event")
            return any("Order 1003" in d.event.content.get("body", "") for d in deliveries) and all(
                d.status == DeliveryStatus.SENT for d in deliveries
            )

        wait_until(answered, "the agents' answers sent to Telegram", [worker], 60, state=self._rows)
        deliveries = list(Delivery.objects.filter(channel_id=channel_id).select_related("event").order_by("event__seq"))
        sent = {str(message_id): body for method, body, message_id in self.telegram.sent}
        self.assertEqual(len(sent), len(deliveries), self.telegram.sent)
        for delivery in deliveries:
            self.assertEqual(delivery.event.room_id, room_id)
            self.assertEqual(delivery.event.direction, Direction.OUTBOUND)
            self.assertEqual(delivery.recipient, "1111111")
            # Telegram's message_id recorded; the fake got exactly this text for this chat.
            self.assertEqual(sent[delivery.provider_message_id], {"chat_id": "1111111", "text": delivery.event.content["body"]})
        self.assertTrue(all(r.path == f"/bot{self.telegram.token}/sendMessage" for r in self.telegram.requests))

        admin = get_user_model().objects.create_superuser("root", "root@example.test", "pw")
        self.client.force_login(admin)
        page = self.client.get(reverse("admin:rooms_room_console", args=[room_id]))
        self.assertEqual(page.status_code, 200)
        self.assertContains(page, "Hi, where is my order 1003?")
        self.assertContains(page, channel_id)
        self.assertContains(page, "Order 1003")
        self.assertContains(page, 'data-status="sent"', count=len(deliveries))

    def _rows(self) -> str:
        events = list(RoomEvent.objects.order_by("created_at").values_list("seq", "direction", "content"))
        deliveries = list(Delivery.objects.values_list("channel_id", "status", "last_error"))
        return f"events {events}\ndeliveries {deliveries}"
