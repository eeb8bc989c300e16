"""Shared ground for the Teams tests (this module holds no tests of its own).

``TeamsTestCase`` runs one FakeBotFramework (a real HTTP server on 127.0.0.1
serving OpenID metadata, keys, tokens and the Bot Connector) per class, a
``teams`` channel pointed at it, and posts activities the way Bot Framework
does: JSON with ``Authorization: Bearer <JWT>`` signed by the fake's RSA key.
"""

from __future__ import annotations

import json
from typing import Any

from django.test import TestCase

from channels_app import resilience
from channels_app.providers.teams.auth import signing_keys
from channels_app.providers.teams.tokens import bot_tokens
from rooms.models import Channel
from tests.channels_app.fakes.teams import FakeBotFramework, fixture
from tests.support import make_channel

CHANNEL = "teams-bot"
URL = f"/webhooks/{CHANNEL}/"


class TeamsTestCase(TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.bf = cls.enterClassContext(FakeBotFramework())

    def setUp(self) -> None:
        resilience.reset_all()
        self.addCleanup(resilience.reset_all)
        # Keys and tokens are cached per process: each test starts from nothing, as a fresh process would.
        signing_keys.clear()
        bot_tokens.clear()
        self.addCleanup(signing_keys.clear)
        self.addCleanup(bot_tokens.clear)
        self.bf.reset()
        self.channel = self.make_teams_channel()

    def make_teams_channel(self, channel_id: str = CHANNEL, **config: Any) -> Channel:
        base = {"app_id": self.bf.app_id, "openid_metadata_url": self.bf.metadata_url, "token_url": self.bf.token_url}
        base.update(config)
        return make_channel(
            channel_id,
            channel_type="teams",
            provider="teams",
            config={k: v for k, v in base.items() if v is not None},
            secrets={"app_password": self.bf.app_password},
        )

    def activity(self, name: str, **changes: Any) -> dict[str, Any]:
        """A documented activity whose serviceUrl is the fake's Connector."""
        payload = fixture(name)
        payload["serviceUrl"] = self.bf.service_url
        payload.update(changes)
        return payload

    def post_activity(self, payload: dict | bytes, *, token: str | None = "", path: str = URL, **claims: Any):
        """POST ``payload`` as Bot Framework would: a fresh token for it, or ``token`` as given (None: no header)."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        if token == "":
            token = self.bf.token_for(**claims)
        extra = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post(path, data=body, content_type="application/json", **extra)
