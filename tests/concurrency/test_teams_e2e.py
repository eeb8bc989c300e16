"""Teams end to end on PostgreSQL + Redis with a real Celery worker: a signed activity in, the demo agent's answer out.

Scaled mode only (``.ci/run``'s second pass). The fake Bot Framework (OpenID
metadata, keys, token endpoint, Bot Connector, over real HTTP) plays Microsoft;
the webhook is posted as Bot Framework posts it, with a JWT signed by the
fake's key; a ``celery worker`` process on the test database runs the demo
agent's generation (queue ``ai``) and the delivery (queue ``deliveries``).
Teams sends no delivery receipts: the delivery ends ``sent`` with the
Connector's activity id, and stays there.
"""

from __future__ import annotations

import io
import json
import unittest
import uuid

from django.core.management import call_command
from django.test import TransactionTestCase, override_settings

from channels_app import resilience
from channels_app.providers.teams.auth import signing_keys
from channels_app.providers.teams.tokens import bot_tokens
from rooms.enums import DeliveryStatus, Direction, EventType
from rooms.models import ChannelBinding, Delivery, RoomEvent
from tests.channels_app.fakes.teams import FakeBotFramework, fixture
from tests.concurrency.celery_workers import SKIP_REASON, purge_broker, scaled_mode_available, wait_ready, wait_until, worker_env
from tests.concurrency.processes import VENV_BIN, quiet_logger, start_child
from tests.console.helpers import logged_in, make_user
from tests.support import make_channel


@unittest.skipUnless(scaled_mode_available(), SKIP_REASON)
class TeamsEndToEndTests(TransactionTestCase):
    def setUp(self) -> None:
        quiet_logger(self, "httpx")
        purge_broker()
        self.addCleanup(purge_broker)
        resilience.reset_all()
        signing_keys.clear()
        bot_tokens.clear()
        self.addCleanup(signing_keys.clear)
        self.addCleanup(bot_tokens.clear)
        self.bf = FakeBotFramework()
        self.bf.__enter__()
        self.addCleanup(self.bf.__exit__, None, None, None)
        # Breaker and rate state live in Redis across runs: a channel id of this run's own.
        self.suffix = uuid.uuid4().hex[:8]
        call_command("seed_demo", stdout=io.StringIO())
        self.channel = make_channel(
            f"teams-{self.suffix}",
            channel_type="teams",
            provider="teams",
            config={
                "app_id": self.bf.app_id,
                "openid_metadata_url": self.bf.metadata_url,
                "token_url": self.bf.token_url,
                # The demo's agents join every room this channel opens, as they do the web chat's.
                "attach_on_create": ["triage", "specialist"],
            },
            secrets={"app_password": self.bf.app_password},
        )

    def worker(self):
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
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                f"teams-{self.suffix}@%h",
            ],
            worker_env(),
            name="celery-worker",
        )
        wait_ready(worker)
        return worker

    def post(self, payload: dict, token: str | None):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        with override_settings(ROOMKIT_TASK_MODE="celery"):
            return self.client.post(
                f"/webhooks/{self.channel.id}/", data=json.dumps(payload), content_type="application/json", **headers
            )

    def test_a_signed_message_opens_a_room_the_demo_agent_answers_in_teams_and_the_console_shows_it(self) -> None:
        worker = self.worker()
        payload = {**fixture("message_personal.json"), "serviceUrl": self.bf.service_url, "text": "hello"}
        conversation = payload["conversation"]["id"]

        forged = self.post(payload, self.bf.token_for(audience="someone-else"))
        self.assertEqual(forged.status_code, 403)
        self.assertFalse(RoomEvent.objects.exists())

        answer = self.post(payload, self.bf.token_for())
        self.assertEqual(answer.status_code, 200, answer.content)
        room_id = answer.json()["room_id"]
        binding = ChannelBinding.objects.get(room_id=room_id, channel=self.channel)
        self.assertEqual((binding.address, binding.metadata["teams"]["service_url"]), (conversation, self.bf.service_url))

        def sent() -> bool:
            return Delivery.objects.filter(channel=self.channel, status=DeliveryStatus.SENT).exists()

        wait_until(sent, "the agent's answer sent to Teams", [worker], 60, state=lambda: self.state(room_id))
        delivery = Delivery.objects.select_related("event").get(channel=self.channel)
        reply = delivery.event
        self.assertEqual((reply.direction, reply.type), (Direction.OUTBOUND, EventType.MESSAGE))
        self.assertEqual(reply.source_channel_id, "triage")
        self.assertEqual(delivery.recipient, conversation)
        self.assertEqual(delivery.attempts, 1)
        self.assertEqual([delivery.provider_message_id], self.bf.activity_ids)
        [(to, activity)] = self.bf.activities
        self.assertEqual(to, conversation)
        self.assertEqual(activity["recipient"]["id"], payload["from"]["id"])
        self.assertEqual(activity["from"]["id"], payload["recipient"]["id"])
        sent_text = activity.get("text") or activity["attachments"][0]["content"]["body"][0]["text"]
        self.assertTrue(sent_text.strip())
        self.assertEqual(self.bf.count("POST", "/token"), 1)

        # The redelivered activity stores nothing and asks the agent for nothing more.
        again = self.post(payload, self.bf.token_for())
        self.assertEqual(again.json()["duplicate"], True)

        admin = logged_in(make_user("ada", superuser=True))
        page = admin.get(f"/admin/rooms/room/{room_id}/console/")
        self.assertEqual(page.status_code, 200)
        html = page.content.decode()
        self.assertIn("hello", html)
        self.assertIn("Megan Bowen", html)
        first_words = " ".join(reply.content.get("body", "").split()[:3])
        self.assertIn(first_words, html)
        self.assertIn('class="rk-delivery" data-status="sent"', html)
        self.assertIn(f"{self.channel.id} →", html)

    def state(self, room_id: str) -> str:
        events = [(e.seq, e.type, e.source_channel_id, str(e.content)[:60]) for e in RoomEvent.objects.filter(room_id=room_id)]
        deliveries = [(d.pk, d.channel_id, d.status, d.last_error[:80]) for d in Delivery.objects.all()]
        return f"events {events}\ndeliveries {deliveries}\nconnector {[r.path for r in self.bf.requests]}"
