"""The operator console in a real browser: Playwright driving Debian's Chromium against a real Daphne.

Run with ``ROOMKIT_E2E=1 make test TESTS=tests.e2e.test_console``. An operator
logs in to the admin, opens the room a web-chat visitor is talking in,
replies (the visitor's page shows it), takes the room over from the AI (which
then stays quiet), and watches the room page update live over the staff socket.
"""

from __future__ import annotations

import time
import unittest
from typing import Any

from rooms.models import Room, RoomEvent, RoomReadMarker
from tests.agents.helpers import make_agent
from tests.console.helpers import PASSWORD
from tests.e2e.operators import OperatorBrowserTestCase
from tests.e2e.support import (
    E2E_ENABLED,
    SKIP_REASON,
    bubbles,
    send_text,
    start_chat,
    wait_until,
)


def staff_socket_routed() -> bool:
    """Whether roomkit_project/asgi.py routes the staff socket yet (the lead wires it)."""
    from roomkit_project.asgi import websocket_urlpatterns

    return any(str(p.pattern).startswith("ws/staff/rooms/") for p in websocket_urlpatterns)


@unittest.skipUnless(E2E_ENABLED, SKIP_REASON)
class ConsoleBrowserTests(OperatorBrowserTestCase):
    def log_in(self, page: Any) -> None:
        page.goto(self.server.base_url + "/admin/login/")
        page.fill("#id_username", self.operator.get_username())
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(self.server.base_url + "/admin/inbox/")  # operators land in the inbox

    def open_room(self, page: Any, room_id: str) -> None:
        page.goto(f"{self.server.base_url}/admin/rooms/room/{room_id}/console/")

    def reply(self, page: Any, text: str) -> None:
        page.fill("#rk-reply-form textarea[name=text]", text)
        page.click("#rk-reply-form input[type=submit]")
        page.wait_for_selector("ul.messagelist li")

    def wait_visitor_sees(self, page: Any, text: str) -> dict[str, Any]:
        return wait_until(
            lambda: next((b for b in bubbles(page) if b["text"] == text), None), message=f"the visitor's page shows {text!r}"
        )

    def test_operator_replies_and_the_visitor_sees_it(self) -> None:
        self.web_chat()
        visitor = self.new_page()
        session = start_chat(visitor, self.server.base_url, "Ann")
        send_text(visitor, "My order never arrived")
        wait_until(lambda: RoomEvent.objects.filter(room_id=session["room_id"], content__body="My order never arrived").exists())

        console = self.new_page()
        self.log_in(console)
        console.goto(self.server.base_url + "/admin/rooms/room/")
        console.click(f"a[data-room-id='{session['room_id']}']")
        console.wait_for_selector("#rk-timeline")
        self.assertIn("My order never arrived", console.inner_text("#rk-timeline"))
        # Opening the page wrote nothing; its script marks what it shows as read, with a POST.
        last_seq = Room.objects.get(pk=session["room_id"]).last_seq
        wait_until(
            lambda: RoomReadMarker.objects.filter(room_id=session["room_id"], seq=last_seq).exists(),
            message="the room page's script marks the room read",
        )
        self.reply(console, "Hi Ann, Olga here. Let me check.")
        bubble = self.wait_visitor_sees(visitor, "Hi Ann, Olga here. Let me check.")
        self.assertEqual(bubble["name"], "Olga")
        self.assertFalse(bubble["mine"])
        self.assertIn("Hi Ann, Olga here. Let me check.", console.inner_text("#rk-timeline"))

    def test_takeover_stops_the_ai_from_answering(self) -> None:
        make_agent("helper", provider="scripted", name="Helper")
        self.web_chat("helper")
        visitor = self.new_page()
        session = start_chat(visitor, self.server.base_url, "Ben")
        room_id = session["room_id"]

        def agent_messages() -> int:
            return RoomEvent.objects.filter(room_id=room_id, source_channel_id="helper", type="message").count()

        send_text(visitor, "hello")
        wait_until(lambda: agent_messages() >= 1, timeout=20, message="the AI answers before the takeover")
        wait_until(lambda: any(b["name"] == "Helper" for b in bubbles(visitor)), message="the visitor sees the AI")

        console = self.new_page()
        self.log_in(console)
        self.open_room(console, room_id)
        console.click("#rk-takeover-form input[type=submit]")
        console.wait_for_selector("ul.messagelist li")
        self.assertEqual(Room.objects.get(pk=room_id).conversation_state["human"]["operator"], "olga")
        answered = agent_messages()

        send_text(visitor, "are you a person?")
        wait_until(lambda: RoomEvent.objects.filter(room_id=room_id, content__body="are you a person?").exists())
        time.sleep(3)  # ample time for the in-process worker to answer, were it going to
        self.assertEqual(agent_messages(), answered)
        self.reply(console, "Yes, a person. How can I help?")
        self.wait_visitor_sees(visitor, "Yes, a person. How can I help?")
        time.sleep(1)
        self.assertEqual(agent_messages(), answered)

    @unittest.skipUnless(staff_socket_routed(), "the staff socket is not routed in roomkit_project/asgi.py yet (lead's diff)")
    def test_the_room_page_and_list_update_live(self) -> None:
        self.web_chat()
        visitor = self.new_page()
        session = start_chat(visitor, self.server.base_url, "Cleo")
        room_id = session["room_id"]

        console = self.new_page()
        self.log_in(console)
        self.open_room(console, room_id)
        wait_until(lambda: console.inner_text("#rk-live") == "live", message="the room page's staff socket is open")
        send_text(visitor, "anybody there?")
        console.wait_for_selector("#rk-timeline li:has-text('anybody there?')")
        send_text(visitor, "<b>still</b> waiting")
        console.wait_for_selector("#rk-timeline li:has-text('<b>still</b> waiting')")
        self.assertEqual(console.locator("#rk-timeline b").count(), 0)  # appended rows are escaped too
        console.close()  # an open room page marks what arrives as read

        room_list = self.new_page()
        self.log_in(room_list)
        room_list.goto(self.server.base_url + "/admin/rooms/room/")
        wait_until(lambda: room_list.inner_text("#rk-list-live") == "live", message="the list's staff socket is open")
        before = room_list.get_attribute(f"a[data-room-id='{room_id}'] >> xpath=ancestor::tr//span[@data-unread]", "data-unread")
        send_text(visitor, "one more")
        wait_until(
            lambda: (
                room_list.get_attribute(f"a[data-room-id='{room_id}'] >> xpath=ancestor::tr//span[@data-unread]", "data-unread")
                != before
            ),
            message="the list's unread count changes without a reload",
        )
