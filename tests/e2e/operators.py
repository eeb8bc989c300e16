"""What the browser tests of the operators' pages share: an operator, pages that fail on script errors, a web chat."""

from __future__ import annotations

import os
from typing import Any

from django.conf import global_settings, settings
from django.test import override_settings

from rooms.enums import ChannelType
from tests.concurrency.processes import quiet_logger
from tests.console.helpers import operator
from tests.e2e.support import BrowserTestCase
from tests.support import make_channel


class OperatorBrowserTestCase(BrowserTestCase):
    """One Daphne (with in-process workers, so agents answer) and one Chromium for the class; an operator "olga"."""

    server_env = {"ROOMKIT_TASK_MODE": "thread"}

    def setUp(self) -> None:
        quiet_logger(self, "httpx")
        self.errors: list[str] = []
        # The server logs in with the project's own hashers, not the suite's fast one.
        with override_settings(PASSWORD_HASHERS=global_settings.PASSWORD_HASHERS):
            self.operator = operator()

    def tearDown(self) -> None:
        if os.environ.get("ROOMKIT_E2E_SERVER_LOG"):
            print(self.server.output())
        self.assertEqual(self.errors, [], "script errors on a page")

    def new_page(self, width: int = 1280, height: int = 900) -> Any:
        context = self.browser.new_context(viewport={"width": width, "height": height})
        self.addCleanup(context.close)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        # The admin runs under a Content-Security-Policy: anything it blocks is a bug of the page.
        page.on("console", lambda msg: self.errors.append(msg.text) if "Content Security Policy" in msg.text else None)
        return page

    def web_chat(self, *agent_ids: str) -> None:
        make_channel(
            settings.ROOMKIT_WEBCHAT_CHANNEL_ID,
            channel_type=ChannelType.WEBSOCKET,
            provider="",
            config={"attach_on_create": list(agent_ids)},
        )
