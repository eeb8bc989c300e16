"""Shared ground for the Telnyx tests (this module holds no tests of its own).

``TelnyxTestCase`` runs one FakeTelnyx (a real HTTP server on 127.0.0.1) per
class and gives each test: channels on it (``tx-sms``, ``tx-rcs``), webhooks
posted the way Telnyx posts them (JSON body, Ed25519 headers from the fake's
test key pair), and a room in which a message from ``hook-in`` (the generic
HTTP channel, standing for any other channel) is owed to a Telnyx recipient,
so a delivery goes through ``delivery_attempt`` and the adapter really sends.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from django.core.cache import cache
from django.test import TestCase

from channels_app import resilience
from rooms.inbound import InboundMessage, process_inbound
from rooms.models import Channel, Delivery
from rooms.services import channel_attach
from tests.channels_app.fakes.telnyx import FakeTelnyx, fixture
from tests.support import make_channel

RECIPIENT = "+13125551234"
FROM = "+18445550001"
PROFILE = "4000eba1-a0c0-4563-9925-b25e842a7cb6"
AGENT = "Agent007"
NO_RETRY = {"max_retries": 0}


class TelnyxTestCase(TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.telnyx = cls.enterClassContext(FakeTelnyx())

    def setUp(self) -> None:
        resilience.reset_all()
        self.addCleanup(resilience.reset_all)
        # RCS capability answers are cached (locmem in tests); each test asks afresh.
        cache.clear()
        self.telnyx.reset()
        self._ids = itertools.count(1)
        self.room_id: str | None = None

    # --- channels -------------------------------------------------------------------------

    def make_telnyx_channel(
        self, channel_id: str = "tx-sms", *, channel_type: str = "sms", secrets: dict | None = None, **config: Any
    ) -> Channel:
        base = {"from": FROM, "messaging_profile_id": PROFILE, "public_key": self.telnyx.public_key, "api_base": self.telnyx.url}
        if channel_type == "rcs":
            base["agent_id"] = AGENT
        base.update(config)
        base = {k: v for k, v in base.items() if v is not None}
        return make_channel(
            channel_id,
            channel_type=channel_type,
            provider="telnyx",
            config=base,
            secrets=secrets if secrets is not None else {"api_key": self.telnyx.api_key},
        )

    # --- webhooks as Telnyx sends them ----------------------------------------------------

    def post_webhook(
        self,
        path: str,
        payload: dict | bytes,
        *,
        headers: dict[str, str] | None = None,
        timestamp: int | None = None,
        **signing: Any,
    ):
        """POST ``payload`` to ``path`` signed by the fake's key (or with ``headers`` exactly as given)."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        sent = self.telnyx.signed(body, timestamp=timestamp, **signing) if headers is None else headers
        extra = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in sent.items()}
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post(path, data=body, content_type="application/json", **extra)

    def status_event(self, name: str, message_id: str, *, status: str | None = None, **payload: Any) -> dict:
        """A documented status fixture about the message ``message_id`` (its recipient's status set to ``status``)."""
        event = fixture(name)
        event["data"]["payload"]["id"] = message_id
        if status is not None:
            event["data"]["payload"]["to"][0]["status"] = status
        event["data"]["payload"].update(payload)
        return event

    # --- a room that owes a Telnyx recipient a message ------------------------------------

    def open_room(self, channel_id: str = "tx-sms", recipient: str = RECIPIENT) -> str:
        if not Channel.objects.filter(pk="hook-in").exists():
            make_channel("hook-in", secrets={"signing_secret": "in-secret"})
        with self.captureOnCommitCallbacks(execute=True):
            self.room_id = process_inbound(
                InboundMessage(channel_id="hook-in", sender="crm-1", content={"type": "text", "body": "opening"})
            ).room_id
            channel_attach(room_id=self.room_id, channel_id=channel_id, address=recipient)
        return self.room_id

    def say(self, content: dict | str, channel_id: str = "tx-sms") -> Delivery:
        """A message from hook-in into the room; returns its delivery to ``channel_id`` after the first attempt."""
        if isinstance(content, str):
            content = {"type": "text", "body": content}
        with self.captureOnCommitCallbacks(execute=True):
            result = process_inbound(
                InboundMessage(channel_id="hook-in", sender="crm-1", content=content, provider_message_id=f"m-{next(self._ids)}")
            )
        return Delivery.objects.get(event_id=result.event_id, channel_id=channel_id)
