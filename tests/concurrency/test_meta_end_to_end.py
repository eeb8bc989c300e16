"""WhatsApp and Messenger end to end: real Daphne, real Celery workers, PostgreSQL, Redis, a fake Graph API.

Scaled mode only (PostgreSQL + Redis, ``.ci/run``'s second pass). For each
platform: a customer's signed webhook reaches Daphne and opens a room; the
demo's scripted triage agent (seed_demo) joins it and answers on a Celery
worker; the answer's delivery goes, on a worker, to the fake Graph API over
HTTP; the fake posts its signed status callback (WhatsApp's ``delivered``
status, Messenger's delivery watermark) back to Daphne, which marks the
delivery delivered; and the room's console page in the admin shows the
customer's message, the agent's answer and the delivered delivery.
"""

from __future__ import annotations

import io
import json
import os
import unittest
import uuid

import httpx
from django.core.management import call_command
from django.test import TransactionTestCase

from channels_app import resilience
from rooms.enums import DeliveryStatus
from rooms.models import Delivery, RoomEvent
from tests.channels_app.fakes.meta import FakeGraph, fixture
from tests.concurrency.celery_workers import SKIP_REASON, purge_broker, scaled_mode_available, wait_ready, wait_until, worker_env
from tests.concurrency.processes import VENV_BIN, Child, quiet_logger, start_child, start_daphnes
from tests.console.helpers import logged_in, operator
from tests.support import make_channel

CUSTOMER_WA = "16505551234"
CUSTOMER_PSID = "6789012345678901"


def start_ai_worker(testcase: TransactionTestCase, name: str) -> Child:
    """A ``celery worker`` that also serves the ``ai`` queue (the agents' generations)."""
    return start_child(
        testcase,
        [
            str(VENV_BIN / "celery"),
            "-A",
            "roomkit_project",
            "worker",
            "-Q",
            "deliveries,default,ai",
            "--pool=threads",
            "-c",
            "4",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"{name}-{os.getpid()}@%h",
        ],
        worker_env(),
        name=name,
    )


@unittest.skipUnless(scaled_mode_available(), SKIP_REASON)
class MetaEndToEndTests(TransactionTestCase):
    def setUp(self) -> None:
        quiet_logger(self, "httpx")
        purge_broker()
        self.addCleanup(purge_broker)
        resilience.reset_all()
        self.suffix = uuid.uuid4().hex[:8]
        self.graph = FakeGraph()
        self.graph.__enter__()
        self.addCleanup(self.graph.__exit__, None, None, None)
        call_command("seed_demo", stdout=io.StringIO())
        [(self.daphne, port)] = start_daphnes(self, 1, ROOMKIT_TASK_MODE="celery")
        self.base = f"http://127.0.0.1:{port}"
        self.worker = start_ai_worker(self, "meta-w1")
        wait_ready(self.worker)

    def post_signed(self, path: str, payload: dict) -> httpx.Response:
        body = json.dumps(payload).encode()
        return httpx.post(
            self.base + path, content=body, headers={"Content-Type": "application/json", **self.graph.signed(body)}, timeout=30
        )

    def follow_through(self, channel_id: str, first: httpx.Response, customer: str) -> tuple[dict, str]:
        """From the stored inbound message: the agent's answer delivered, and the console shows it all."""
        self.assertEqual(first.status_code, 200, first.text)
        room_id = first.json()["room_id"]

        def answer_delivered() -> bool:
            return Delivery.objects.filter(
                channel_id=channel_id, event__room_id=room_id, recipient=customer, status=DeliveryStatus.DELIVERED
            ).exists()

        wait_until(answer_delivered, f"the agent's answer delivered on {channel_id}", [self.daphne, self.worker], 60)
        delivery = Delivery.objects.select_related("event").get(channel_id=channel_id, event__room_id=room_id, recipient=customer)
        answer = delivery.event
        self.assertEqual(answer.source_channel_id, "triage")
        sent = self.graph.messages[delivery.provider_message_id]
        self.assertTrue(all(code == 200 for code in self.graph.callback_answers), self.graph.callback_answers)

        client = logged_in(operator(f"olga-{self.suffix}"))
        page = client.get(f"/admin/rooms/room/{room_id}/console/")
        self.assertEqual(page.status_code, 200)
        html = page.content.decode()
        inbound = RoomEvent.objects.get(room_id=room_id, source_channel_id=channel_id)
        self.assertIn(inbound.content["body"], html)
        self.assertIn(answer.content["body"][:40].replace("'", "&#x27;"), html)
        self.assertIn('data-status="delivered"', html)
        return sent, answer.content["body"]

    def test_whatsapp_inbound_to_agent_answer_to_delivered_in_the_console(self) -> None:
        channel = make_channel(
            f"wa-{self.suffix}",
            channel_type="whatsapp",
            provider="whatsapp_cloud",
            config={
                "phone_number_id": self.graph.phone_number_id,
                "api_base": self.graph.url,
                "attach_on_create": ["triage", "specialist"],
            },
            secrets={"access_token": self.graph.access_token, "app_secret": self.graph.app_secret, "verify_token": "vt"},
        )
        path = f"/webhooks/{channel.id}/"
        self.graph.callback_url = self.base + path
        payload = fixture("whatsapp", "text.json")
        payload["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"] = "hello"

        forged = httpx.post(self.base + path, content=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
        self.assertEqual(forged.status_code, 403)
        sent, answer = self.follow_through(channel.id, self.post_signed(path, payload), "+" + CUSTOMER_WA)

        self.assertEqual((sent["to"], sent["type"], sent["text"]["body"]), (CUSTOMER_WA, "text", answer))

    def test_messenger_inbound_to_agent_answer_to_delivered_in_the_console(self) -> None:
        channel = make_channel(
            f"fb-{self.suffix}",
            channel_type="messenger",
            provider="messenger",
            config={"page_id": self.graph.page_id, "api_base": self.graph.url, "attach_on_create": ["triage", "specialist"]},
            secrets={"page_access_token": self.graph.page_token, "app_secret": self.graph.app_secret, "verify_token": "vt"},
        )
        path = f"/webhooks/{channel.id}/"
        self.graph.callback_url = self.base + path
        payload = fixture("messenger", "text.json")
        payload["entry"][0]["messaging"][0]["message"]["text"] = "hello"

        sent, answer = self.follow_through(channel.id, self.post_signed(path, payload), CUSTOMER_PSID)

        self.assertEqual(sent, {"recipient": {"id": CUSTOMER_PSID}, "messaging_type": "RESPONSE", "message": {"text": answer}})
