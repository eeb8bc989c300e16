"""Shared ground for the WhatsApp Cloud API tests (this module holds no tests of its own).

``WhatsAppTestCase`` runs one FakeGraph (a real HTTP server on 127.0.0.1) per
class and gives each test: a ``wa`` channel on it, webhooks posted the way
Meta posts them (JSON signed ``X-Hub-Signature-256`` with the app secret), and
a customer's room whose deliveries go through ``delivery_attempt`` to the fake.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from django.test import TestCase

from channels_app import resilience
from rooms.inbound import InboundMessage, process_inbound
from rooms.models import Channel, Delivery
from rooms.services import channel_attach
from tests.channels_app.fakes.meta import FakeGraph, fixture
from tests.support import make_channel

URL = "/webhooks/wa/"
CUSTOMER = "+16505551234"
VERIFY_TOKEN = "verify-me-please"


class WhatsAppTestCase(TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.graph = cls.enterClassContext(FakeGraph())

    def setUp(self) -> None:
        resilience.reset_all()
        self.addCleanup(resilience.reset_all)
        self.graph.reset()
        self._ids = itertools.count(1)
        self.channel = self.make_whatsapp_channel()

    def make_whatsapp_channel(self, channel_id: str = "wa", *, secrets: dict | None = None, **config: Any) -> Channel:
        base = {"phone_number_id": self.graph.phone_number_id, "api_base": self.graph.url, "api_version": "v21.0"}
        base.update(config)
        return make_channel(
            channel_id,
            channel_type="whatsapp",
            provider="whatsapp_cloud",
            config={k: v for k, v in base.items() if v is not None},
            secrets=secrets
            if secrets is not None
            else {"access_token": self.graph.access_token, "app_secret": self.graph.app_secret, "verify_token": VERIFY_TOKEN},
        )

    def post_webhook(self, payload: dict | bytes, *, headers: dict[str, str] | None = None, path: str = URL):
        """POST ``payload`` signed with the app secret (or with ``headers`` exactly as given)."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        sent = self.graph.signed(body) if headers is None else headers
        extra = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in sent.items()}
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post(path, data=body, content_type="application/json", **extra)

    def customer_writes(self, text: str = "hello") -> str:
        """The customer's text message through the signed webhook; returns the room id."""
        payload = fixture("whatsapp", "text.json")
        message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
        message["id"] = f"wamid.IN{next(self._ids)}"
        message["text"]["body"] = text
        response = self.post_webhook(payload)
        assert response.status_code == 200, response.content
        return response.json()["room_id"]

    def say(self, room_id: str, content: dict | str) -> Delivery:
        """A message from another channel into the room; returns its WhatsApp delivery after the first attempt."""
        if not Channel.objects.filter(pk="hook-in").exists():
            make_channel("hook-in", secrets={"signing_secret": "in-secret"})
            channel_attach(room_id=room_id, channel_id="hook-in", address="crm-1")
        if isinstance(content, str):
            content = {"type": "text", "body": content}
        with self.captureOnCommitCallbacks(execute=True):
            result = process_inbound(
                InboundMessage(
                    channel_id="hook-in",
                    sender="crm-1",
                    room_id=room_id,
                    content=content,
                    provider_message_id=f"m-{next(self._ids)}",
                )
            )
        return Delivery.objects.get(event_id=result.event_id, channel_id="wa")

    def status_webhook(self, name: str, wamid: str, **fields: Any) -> dict:
        payload = fixture("whatsapp", name)
        payload["entry"][0]["changes"][0]["value"]["statuses"][0].update(id=wamid, **fields)
        return payload
