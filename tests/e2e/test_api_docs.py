"""The API documentation page in a real browser: rendered from the schema, offline, under its CSP.

Run with ``ROOMKIT_E2E=1 make test TESTS=tests.e2e.test_api_docs``.
"""

from __future__ import annotations

import unittest
from typing import Any

from tests.e2e.support import E2E_ENABLED, SKIP_REASON, BrowserTestCase


@unittest.skipUnless(E2E_ENABLED, SKIP_REASON)
class APIDocsBrowserTests(BrowserTestCase):
    def test_every_operation_is_shown_from_this_site_alone_with_no_policy_violation(self) -> None:
        context = self.browser.new_context(viewport={"width": 1280, "height": 900})
        self.addCleanup(context.close)
        page = context.new_page()
        page.set_default_timeout(15_000)
        problems: list[str] = []
        requests: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
        page.on("request", lambda request: requests.append(request.url))

        page.goto(self.server.base_url + "/api/v1/docs")
        page.wait_for_selector(".opblock-summary-path")
        paths: list[Any] = page.locator(".opblock-summary-path").all_inner_texts()
        shown = {p.replace("\u200b", "").strip() for p in paths}
        schema = page.request.get(self.server.base_url + "/api/v1/openapi.json").json()
        self.assertEqual(shown, set(schema["paths"]))
        self.assertIn("RoomKit Django API", page.inner_text(".info .title"))
        # An operation opens to its parameters and documented answers, 413 included.
        page.click("#operations-rooms-rooms_api_post_message")
        page.wait_for_selector("#operations-rooms-rooms_api_post_message .responses-table")
        statuses = page.locator("#operations-rooms-rooms_api_post_message .responses-table .response-col_status")
        self.assertTrue({"201", "400", "401", "404", "413", "415"} <= {s.strip() for s in statuses.all_inner_texts()})
        self.assertEqual(problems, [])
        self.assertTrue(requests)
        self.assertEqual([u for u in requests if not u.startswith(self.server.base_url)], [])
