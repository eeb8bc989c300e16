"""The operators' inbox in a real browser: Playwright driving Debian's Chromium against a real Daphne.

Run with ``ROOMKIT_E2E=1 make test TESTS=tests.e2e.test_inbox``. An operator
works a web-chat visitor's conversation from ``/admin/inbox/``: it arrives at
the top of the list live, is assigned, answered without a reload (the visitor
sees the operator typing, then the reply; the operator sees "Seen"), answered
again with a saved reply, taken over from the AI and handed back (the visitor
sees who joined and left). A viewer reads but cannot act.
"""

from __future__ import annotations

import unittest
from typing import Any

from django.conf import global_settings
from django.test import override_settings

from rooms.models import CannedResponse, Room, RoomEvent
from tests.agents.helpers import make_agent
from tests.console.helpers import PASSWORD, viewer
from tests.e2e.operators import OperatorBrowserTestCase
from tests.e2e.support import E2E_ENABLED, SKIP_REASON, bubbles, send_text, start_chat, wait_until


@unittest.skipUnless(E2E_ENABLED, SKIP_REASON)
class InboxBrowserTests(OperatorBrowserTestCase):
    def new_page(self, width: int = 1400, height: int = 900) -> Any:
        return super().new_page(width, height)

    def log_in(self, page: Any, username: str) -> None:
        page.goto(self.server.base_url + "/admin/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(self.server.base_url + "/admin/inbox/")
        wait_until(lambda: page.inner_text("#rk-list-live") == "live", message="the inbox's list socket is open")

    def first_row(self, page: Any) -> str:
        return page.inner_text("#rk-inbox-rows li:first-child") if page.locator("#rk-inbox-rows li").count() else ""

    def test_an_operator_works_a_new_conversation_without_reloading(self) -> None:
        CannedResponse.objects.create(shortcut="refund", text="Refunds reach your card within 5 working days.")
        self.web_chat()
        inbox = self.new_page()
        self.log_in(inbox, "olga")

        visitor = self.new_page(420, 800)
        session = start_chat(visitor, self.server.base_url, "Dana")
        send_text(visitor, "I need help with my refund")
        # It arrives live at the top of the list, with its preview.
        wait_until(lambda: "Dana" in self.first_row(inbox), message="the new conversation tops the list")
        wait_until(lambda: "I need help with my refund" in self.first_row(inbox), message="the row shows the last message")

        inbox.click("#rk-inbox-rows li:first-child a")
        inbox.wait_for_selector("#rk-composer-text")
        wait_until(lambda: inbox.inner_text("#rk-live") == "live", message="the conversation's socket is open")
        inbox.evaluate("() => { window.rkNoReload = true; }")  # gone if the page reloads

        inbox.click("#rk-assign-me")
        wait_until(lambda: inbox.inner_text("#rk-assignee") == "olga", message="the panel shows the assignee")
        self.assertEqual(Room.objects.get(pk=session["room_id"]).assignee, self.operator)
        # Mine / Unassigned.
        inbox.click("label:has(input[value=mine])")
        wait_until(lambda: "Dana" in self.first_row(inbox), message="Mine lists it")
        inbox.click("label:has(input[value=unassigned])")
        wait_until(lambda: "Dana" not in inbox.inner_text("#rk-inbox-list"), message="Unassigned does not")
        inbox.click("label:has(input[value=all])")
        wait_until(lambda: "Dana" in self.first_row(inbox), message="All lists it again")

        # Typing: the visitor sees it.
        inbox.click("#rk-composer-text")
        inbox.keyboard.type("Hi Dana, I am looking at it", delay=20)
        wait_until(lambda: "Olga is typing" in visitor.inner_text("body"), message="the visitor sees the operator typing")
        inbox.keyboard.press("Control+Enter")
        reply = wait_until(
            lambda: next((b for b in bubbles(visitor) if b["text"] == "Hi Dana, I am looking at it"), None),
            message="the visitor sees the reply",
        )
        self.assertEqual(reply["name"], "Olga")
        wait_until(lambda: inbox.input_value("#rk-composer-text") == "", message="a fresh composer")
        inbox.wait_for_selector("#rk-timeline li:has-text('Hi Dana, I am looking at it')")
        # The visitor's page is open and at the bottom: it reads, and the operator sees "Seen".
        inbox.wait_for_selector("#rk-timeline li:has-text('Hi Dana, I am looking at it') .rk-seen")

        # A saved reply with "/".
        inbox.click("#rk-composer-text")
        inbox.keyboard.type("/ref", delay=20)
        inbox.wait_for_selector("#rk-canned li:has-text('/refund')")
        inbox.keyboard.press("Enter")
        self.assertEqual(inbox.input_value("#rk-composer-text"), "Refunds reach your card within 5 working days.")
        inbox.keyboard.press("Control+Enter")
        wait_until(
            lambda: any(b["text"] == "Refunds reach your card within 5 working days." for b in bubbles(visitor)),
            message="the visitor gets the saved reply",
        )
        # A private note stays in the inbox.
        inbox.click("label:has(input[value=note])")
        inbox.fill("#rk-composer-text", "Customer asked twice, be quick")
        inbox.click("#rk-send")
        inbox.wait_for_selector("#rk-timeline li.rk-internal:has-text('Customer asked twice')")
        self.assertTrue(inbox.evaluate("() => window.rkNoReload === true"), "the page reloaded")
        self.assertNotIn("Customer asked twice", visitor.inner_text("body"))

        # The visitor types: the operator sees it.
        visitor.click("#text")
        visitor.keyboard.type("one more thing", delay=30)
        wait_until(
            lambda: "Dana is typing" in inbox.inner_text("#rk-customer-typing"), message="the operator sees the visitor typing"
        )

    def test_take_over_and_hand_back_in_the_visitors_words(self) -> None:
        make_agent("helper", provider="scripted", name="Helper")
        self.web_chat("helper")
        visitor = self.new_page(420, 800)
        session = start_chat(visitor, self.server.base_url, "Eve")
        room_id = session["room_id"]

        def agent_messages() -> int:
            return RoomEvent.objects.filter(room_id=room_id, source_channel_id="helper", type="message").count()

        send_text(visitor, "hello")
        wait_until(lambda: agent_messages() >= 1, timeout=20, message="the AI answers first")

        inbox = self.new_page()
        self.log_in(inbox, "olga")
        inbox.goto(f"{self.server.base_url}/admin/inbox/c/{room_id}/")
        wait_until(lambda: inbox.inner_text("#rk-live") == "live", message="the conversation's socket is open")
        inbox.click("#rk-takeover")
        inbox.wait_for_selector("#rk-handback")
        self.assertEqual(inbox.inner_text("#rk-assignee"), "olga")  # taking over assigns it
        wait_until(lambda: "Olga joined the conversation" in visitor.inner_text("body"), message="the visitor is told")
        answered = agent_messages()
        send_text(visitor, "are you a person?")
        wait_until(lambda: RoomEvent.objects.filter(room_id=room_id, content__body="are you a person?").exists())
        inbox.wait_for_selector("#rk-timeline li:has-text('are you a person?')")
        self.assertEqual(agent_messages(), answered)

        inbox.click("#rk-handback")
        inbox.wait_for_selector("#rk-takeover")
        wait_until(lambda: "Olga left the conversation" in visitor.inner_text("body"), message="the visitor is told")
        self.assertNotIn("took over", visitor.inner_text("body"))  # the internal handoff text stays internal

    def test_a_viewer_reads_but_has_nothing_to_act_with(self) -> None:
        with override_settings(PASSWORD_HASHERS=global_settings.PASSWORD_HASHERS):
            viewer("vera")
        self.web_chat()
        visitor = self.new_page(420, 800)
        session = start_chat(visitor, self.server.base_url, "Finn")
        send_text(visitor, "hi there")
        page = self.new_page()
        self.log_in(page, "vera")
        wait_until(lambda: "Finn" in self.first_row(page), message="the viewer sees the conversation")
        page.goto(f"{self.server.base_url}/admin/inbox/c/{session['room_id']}/")
        page.wait_for_selector("#rk-timeline li:has-text('hi there')")
        for control in ("#rk-composer-form", "#rk-assign-me", "#rk-takeover", "#rk-resolve"):
            self.assertEqual(page.locator(control).count(), 0, control)
        self.assertIn("replying needs the operator role", page.inner_text("#rk-room"))
