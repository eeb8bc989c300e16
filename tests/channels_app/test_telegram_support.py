"""Shared ground for the Telegram tests (this module holds no tests of its own).

``TelegramTestCase`` runs one FakeTelegram (a real HTTP server on 127.0.0.1)
per class and gives each test a ``tg`` channel on it, updates posted the way
Telegram posts them (JSON, the secret header), and a room that owes a
Telegram chat a message, so a delivery really goes through the adapter.
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
from tests.channels_app.fakes.telegram import FakeTelegram
from tests.support import make_channel

WEBHOOK_SECRET = "s3cr3t-Token_for-tg"
CHAT = "1111111"
URL = "/webhooks/tg/"


class TelegramTestCase(TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.telegram = cls.enterClassContext(FakeTelegram())

    def setUp(self) -> None:
        resilience.reset_all()
        self.addCleanup(resilience.reset_all)
        self.telegram.reset()
        self._ids = itertools.count(1)

    def make_telegram_channel(self, channel_id: str = "tg", *, secrets: dict | None = None, **config: Any) -> Channel:
        return make_channel(
            channel_id,
            channel_type="telegram",
            provider="telegram",
            config={"api_base": self.telegram.url, **config},
            secrets=secrets if secrets is not None else {"bot_token": self.telegram.token, "webhook_secret": WEBHOOK_SECRET},
        )

    def post_update(self, update: dict | bytes, *, secret: str | None = WEBHOOK_SECRET, path: str = URL):
        body = update if isinstance(update, bytes) else json.dumps(update).encode()
        extra = {} if secret is None else {"HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN": secret}
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post(path, data=body, content_type="application/json", **extra)

    def open_room(self, channel_id: str = "tg", chat: str = CHAT) -> str:
        if not Channel.objects.filter(pk="hook-in").exists():
            make_channel("hook-in", secrets={"signing_secret": "in-secret"})
        with self.captureOnCommitCallbacks(execute=True):
            room_id = process_inbound(
                InboundMessage(channel_id="hook-in", sender="crm-1", content={"type": "text", "body": "opening"})
            ).room_id
            channel_attach(room_id=room_id, channel_id=channel_id, address=chat)
        return room_id

    def say(self, content: dict | str, channel_id: str = "tg") -> Delivery:
        """A message from hook-in into the room; its delivery to ``channel_id`` after the first attempt."""
        if isinstance(content, str):
            content = {"type": "text", "body": content}
        with self.captureOnCommitCallbacks(execute=True):
            result = process_inbound(
                InboundMessage(channel_id="hook-in", sender="crm-1", content=content, provider_message_id=f"m-{next(self._ids)}")
            )
        return Delivery.objects.get(event_id=result.event_id, channel_id=channel_id)
