"""The chat page's resume in a real browser: its socket cut at random moments while others write.

Playwright sits between the page and the server (``page.route_web_socket``),
passes every frame through, and cuts the page's socket at random moments:
during a replay, in live traffic, right after a reconnect. Meanwhile three
writers post to the room through the provider webhook, and the visitor types
too. The page (``channels_app/static/webchat/chat.js``) resumes each time from the
last event it holds without a gap; at the end it must show exactly the
room's stored messages, in ``seq`` order, none ever shown twice.
"""

from __future__ import annotations

import random
import re
import threading
import time
import unittest
import uuid
from typing import Any

from rooms.enums import EventType
from rooms.models import RoomEvent
from rooms.services import channel_attach
from tests.concurrency.processes import quiet_logger
from tests.e2e.support import (
    E2E_ENABLED,
    RECORD_ADDED,
    SKIP_REASON,
    BrowserTestCase,
    bubbles,
    post_webhook,
    send_text,
    start_chat,
    wait_until,
)
from tests.support import make_channel

HOOK_SECRET = "e2e-resume-secret"
WRITERS = 3
PER_WRITER = 40


@unittest.skipUnless(E2E_ENABLED, SKIP_REASON)
class ChatPageResumeTest(BrowserTestCase):
    def test_random_cuts_while_others_write_lose_and_double_nothing(self) -> None:
        quiet_logger(self, "httpx")
        seed = random.randrange(1 << 30)
        rng = random.Random(seed)
        note = f"(random seed {seed})"
        context = self.browser.new_context(viewport={"width": 1100, "height": 800})
        self.addCleanup(context.close)
        context.add_init_script(RECORD_ADDED)
        page = context.new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        sockets: list[tuple[Any, Any]] = []

        def through(route: Any) -> None:
            sockets.append((route, route.connect_to_server()))

        page.route_web_socket(re.compile(r".*/ws/chat/.*"), through)
        session = start_chat(page, self.server.base_url, "Ann")
        room_id = session["room_id"]
        hook = f"hook-{uuid.uuid4().hex[:8]}"
        make_channel(hook, secrets={"signing_secret": HOOK_SECRET})
        channel_attach(room_id=room_id, channel_id=hook, address="crm-desk", display_name="Help desk")

        failures: list[str] = []

        def writer(w: int) -> None:
            wrng = random.Random(seed + w)
            for n in range(PER_WRITER):
                payload = {"id": f"w{w}-{n}", "sender": "crm-desk", "text": f"writer {w} message {n}"}
                try:
                    r = post_webhook(self.server, hook, HOOK_SECRET, payload)
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text}")
                except Exception as exc:
                    failures.append(repr(exc))
                time.sleep(wrng.uniform(0.0, 0.08))

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
        for t in threads:
            t.start()
        cuts = 0
        typed = 0
        while any(t.is_alive() for t in threads):
            page.wait_for_timeout(rng.uniform(50, 700))  # lets the browser and Playwright run meanwhile
            if rng.random() < 0.3:
                send_text(page, f"typed {typed}")
                typed += 1
            if len(sockets) > cuts:  # the page's current socket, not yet cut
                route, server = sockets[-1]
                route.close()
                server.close()
                cuts = len(sockets)
        for t in threads:
            t.join(30)
        self.assertEqual(failures, [])

        def settled() -> bool:
            rows = list(RoomEvent.objects.filter(room_id=room_id, type=EventType.MESSAGE).order_by("seq"))
            shown = bubbles(page)
            done = page.locator("#messages .msg.pending").count() == 0
            return done and len(rows) == WRITERS * PER_WRITER + typed and [b["seq"] for b in shown] == [r.seq for r in rows]

        wait_until(settled, timeout=60, message=f"the page shows every stored message in seq order {note}")
        rows = list(RoomEvent.objects.filter(room_id=room_id, type=EventType.MESSAGE).order_by("seq"))
        self.assertEqual([b["text"] for b in bubbles(page)], [r.content["body"] for r in rows], note)
        added = page.evaluate("() => window.__rkAdded")
        self.assertEqual(len(added), len(set(added)), f"a message was shown twice {note}")
        self.assertGreaterEqual(cuts, 5, note)
        self.assertGreater(len(sockets), 5, "the page reconnected after the cuts")
        self.assertEqual(errors, [])
