"""The chat page in a real browser: Playwright driving Debian's Chromium against a real Daphne.

Run with ``ROOMKIT_E2E=1 make test TESTS=tests.e2e`` (``.ci/run`` does). Each
test opens one or two browser contexts (two visitors) on the page the project
serves; the other side of the conversation is a real provider webhook, the
inbound path, or the channel layer, as in production.
"""

from __future__ import annotations

import os
import unittest
import uuid
from typing import Any

from django.conf import settings
from django.test import TransactionTestCase, override_settings

from channels_app.webchat.sessions import chat_session_join
from rooms.enums import ChannelCategory, ChannelType, EventType
from rooms.inbound import InboundMessage, process_inbound
from rooms.models import Room, RoomEvent
from rooms.services import channel_attach, room_close
from tests.concurrency.processes import quiet_logger
from tests.e2e.support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    E2E_ENABLED,
    E2E_REDIS_URL,
    RECORD_ADDED,
    SKIP_REASON,
    BrowserTestCase,
    ChatServer,
    bubbles,
    off_loop,
    open_with_session,
    png_bytes,
    post_webhook,
    redis_up,
    require_browser,
    send_text,
    session_of,
    start_chat,
    texts,
    wait_connected,
    wait_until,
)
from tests.support import make_channel

HOOK_SECRET = "e2e-hook-secret"


def _message_rows(room_id: str) -> list[RoomEvent]:
    return list(RoomEvent.objects.filter(room_id=room_id, type=EventType.MESSAGE).order_by("seq"))


@unittest.skipUnless(E2E_ENABLED, SKIP_REASON)
class ChatPageBrowserTests(BrowserTestCase):
    """One Daphne on the embedded default (in-memory channel layer) and one Chromium for the class."""

    def setUp(self) -> None:
        quiet_logger(self, "httpx")
        self.pages: list[tuple[Any, list[str], list[str]]] = []
        if self.server.child is None or self.server.child.proc.poll() is not None:
            self.server.start()

    def tearDown(self) -> None:
        if os.environ.get("ROOMKIT_E2E_SERVER_LOG"):
            print(self.server.output())
        for page, errors, dialogs in self.pages:
            self.assertEqual(errors, [], f"script errors on {page.url}")
            self.assertEqual(dialogs, [], "a dialog was opened")

    # -- helpers ---------------------------------------------------------------
    def new_page(self, viewport: dict[str, int] | None = None) -> Any:
        context = self.browser.new_context(viewport=viewport or {"width": 1100, "height": 800})
        self.addCleanup(context.close)
        context.add_init_script(RECORD_ADDED)
        page = context.new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        dialogs: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        def on_dialog(dialog: Any) -> None:
            dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        self.pages.append((page, errors, dialogs))
        return page

    def attach_hook(self, room_id: str, address: str = "crm-desk", name: str = "Help desk") -> str:
        channel_id = f"hook-{uuid.uuid4().hex[:8]}"
        make_channel(channel_id, secrets={"signing_secret": HOOK_SECRET})
        channel_attach(room_id=room_id, channel_id=channel_id, address=address, display_name=name)
        return channel_id

    def webhook(self, channel_id: str, sender: str, text: str, **extra: Any) -> dict[str, Any]:
        r = post_webhook(
            self.server, channel_id, HOOK_SECRET, {"id": f"m-{uuid.uuid4().hex}", "sender": sender, "text": text, **extra}
        )
        self.assertEqual(r.status_code, 200, r.text)
        return r.json()

    def wait_texts(self, page: Any, wanted: list[str], timeout: float = 15.0) -> list[dict[str, Any]]:
        def ready() -> list[dict[str, Any]] | None:
            got = bubbles(page)
            have = [b["text"] for b in got]
            return got if all(w in have for w in wanted) else None

        return wait_until(ready, timeout=timeout, message=f"the page shows {wanted}")

    def added_seqs(self, page: Any) -> list[int]:
        return page.evaluate("() => window.__rkAdded")

    # -- scenarios -------------------------------------------------------------
    def test_the_room_appears_with_the_first_message(self) -> None:
        page = self.new_page()
        session = start_chat(page, self.server.base_url, "Ann", open_room=False)
        # Connected, and nothing stored: a visitor who never writes leaves no room.
        self.assertFalse(Room.objects.filter(pk=session["room_id"]).exists())

        send_text(page, "Hello, first words")
        [mine] = self.wait_texts(page, ["Hello, first words"])
        self.assertEqual((mine["mine"], mine["seq"]), (True, 1))
        room = Room.objects.get(pk=session["room_id"])
        self.assertEqual(room.participants.get().display_name, "Ann")

    def test_two_visitors_chat_in_one_room(self) -> None:
        ann = self.new_page()
        ann_session = start_chat(ann, self.server.base_url, "Ann")
        bob_session = chat_session_join(ann_session["room_id"], display_name="Bob")
        bob = self.new_page(viewport={"width": 390, "height": 760})
        open_with_session(bob, self.server.base_url, bob_session, "Bob")

        send_text(ann, "Hello from Ann")
        [on_bob] = self.wait_texts(bob, ["Hello from Ann"])
        self.assertEqual((on_bob["name"], on_bob["mine"]), ("Ann", False))

        send_text(bob, "Hi Ann, Bob here")
        got = self.wait_texts(ann, ["Hello from Ann", "Hi Ann, Bob here"])
        self.assertEqual(
            [(b["text"], b["mine"], b["name"]) for b in got], [("Hello from Ann", True, None), ("Hi Ann, Bob here", False, "Bob")]
        )
        self.assertEqual([b["seq"] for b in got], [1, 2])
        # Times are shown with each message.
        self.assertEqual(ann.locator("#messages .msg time").count(), 2)

        # Bob's page has shown Ann's message: Ann sees it was read.
        wait_until(lambda: "Seen" in bubbles(ann)[0]["foot"], message="Ann's message is marked Seen")
        self.assertEqual(ann.locator("#messages .receipt").count(), 1)

        # History: a reload replays the room, once, in order.
        ann.reload()
        wait_connected(ann)
        got = self.wait_texts(ann, ["Hello from Ann", "Hi Ann, Bob here"])
        self.assertEqual(len(got), 2)
        self.assertEqual(sorted(self.added_seqs(ann)), [1, 2])

        rows = _message_rows(ann_session["room_id"])
        self.assertEqual(
            [(r.content["body"], r.source_participant_id) for r in rows],
            [("Hello from Ann", ann_session["participant_id"]), ("Hi Ann, Bob here", bob_session.participant_id)],
        )

    def test_typing_indicator_both_ways(self) -> None:
        ann = self.new_page()
        ann_session = start_chat(ann, self.server.base_url, "Ann")
        bob = self.new_page()
        open_with_session(bob, self.server.base_url, chat_session_join(ann_session["room_id"], display_name="Bob"), "Bob")

        ann.type("#text", "Hel")
        wait_until(lambda: "Ann is typing" in bob.inner_text("#activity"), message="Bob sees Ann typing")
        self.assertEqual(ann.inner_text("#activity").strip(), "", "nobody sees their own typing")
        ann.fill("#text", "")  # cleared: typing stops
        wait_until(lambda: bob.inner_text("#activity").strip() == "", message="the indicator goes away")

        bob.type("#text", "Yo")
        wait_until(lambda: "Bob is typing" in ann.inner_text("#activity"), message="Ann sees Bob typing")
        bob.press("#text", "Enter")  # sending ends typing
        self.wait_texts(ann, ["Yo"])
        wait_until(lambda: ann.inner_text("#activity").strip() == "", message="the indicator goes away on send")

    def test_presence_of_the_other_visitor(self) -> None:
        ann = self.new_page()
        ann_session = start_chat(ann, self.server.base_url, "Ann")
        bob = self.new_page()
        open_with_session(bob, self.server.base_url, chat_session_join(ann_session["room_id"], display_name="Bob"), "Bob")
        # Bob has spoken, so Ann's page knows his name.
        send_text(bob, "hi")
        self.wait_texts(ann, ["hi"])
        wait_until(lambda: "Bob is online" in ann.inner_text("#status"), message="Ann sees Bob online")
        bob.context.close()
        wait_until(lambda: "Bob" not in ann.inner_text("#status"), message="Ann sees Bob go offline")

    def test_reconnect_in_the_middle_of_a_burst_loses_and_doubles_nothing(self) -> None:
        page = self.new_page()
        sockets: list[Any] = []
        page.on("websocket", lambda ws: sockets.append(ws))
        session = start_chat(page, self.server.base_url, "Ann")
        room_id = session["room_id"]
        hook = self.attach_hook(room_id)
        mine = ["mine while bursting", "mine right before the cut", "typed offline 1", "typed offline 2"]

        for i in range(1, 13):
            self.webhook(hook, "crm-desk", f"burst {i}")
            if i == 6:
                send_text(page, mine[0])
        send_text(page, mine[1])
        self.server.kill()

        # While the server is down the other side keeps writing (another
        # server process would take these) and the visitor keeps typing.
        for i in range(13, 21):
            off_loop(
                process_inbound,
                InboundMessage(channel_id=hook, sender="crm-desk", text=f"burst {i}", provider_message_id=f"b-{i}"),
            )
        wait_until(
            lambda: page.evaluate("() => document.getElementById('status').classList.contains('offline')"),
            message="the page noticed",
        )
        send_text(page, mine[2])
        send_text(page, mine[3])
        waiting = page.locator("#messages .msg.pending .foot")
        wait_until(
            lambda: waiting.count() >= 2 and all("Waiting" in t for t in waiting.all_inner_texts()),
            message="queued while offline",
        )

        self.server.start()
        for i in range(21, 33):
            self.webhook(hook, "crm-desk", f"burst {i}")

        expected = [f"burst {i}" for i in range(1, 33)] + mine
        self.wait_texts(page, expected, timeout=30)
        wait_until(lambda: page.locator("#messages .msg.pending").count() == 0, message="the outbox drained")

        rows = _message_rows(room_id)
        stored = [r.content["body"] for r in rows]
        for text in expected:
            self.assertEqual(stored.count(text), 1, f"{text!r} stored {stored.count(text)} times")
        shown = bubbles(page)
        self.assertEqual([b["seq"] for b in shown], [r.seq for r in rows], "every stored message shown, in seq order")
        self.assertEqual([b["text"] for b in shown], stored)
        added = self.added_seqs(page)
        self.assertEqual(len(added), len(set(added)), "no message was ever shown twice")
        self.assertEqual(page.locator("#messages .msg:not([data-seq])").count(), 0)
        self.assertGreaterEqual(len(sockets), 2, "the page reconnected")
        # The queue survived nothing but memory; it is empty now.
        self.assertEqual(page.evaluate("() => JSON.parse(localStorage.getItem('roomkit.chat.outbox')).items"), [])

    def test_a_hostile_message_is_shown_as_text(self) -> None:
        page = self.new_page()
        session = start_chat(page, self.server.base_url, "Ann")
        hostile = '<img src=x onerror=alert(1)><script>window.__pwned = 1; alert(2)</script><b>bold</b> & "quotes"'
        hostile_name = "<svg onload=alert(3)>"
        hook = self.attach_hook(session["room_id"], address="+15550001", name=hostile_name)
        self.webhook(hook, "+15550001", hostile)

        for attempt in ("live", "replayed"):
            with self.subTest(attempt):
                if attempt == "replayed":
                    page.reload()
                    wait_connected(page)
                [shown] = self.wait_texts(page, [hostile])
                self.assertEqual(shown["text"], hostile)
                self.assertEqual(shown["images"], [])
                self.assertEqual(page.locator("#messages script, #messages b, #messages svg, #messages img").count(), 0)
                self.assertIsNone(page.evaluate("() => window.__pwned"))
        self.assertEqual([b["name"] for b in bubbles(page)], [hostile_name], "the sender's name is text too")
        self.assertNotIn("<svg", page.evaluate("() => document.getElementById('messages').innerHTML.replaceAll('&lt;', '')"))

    def test_edit_and_delete_are_shown_on_the_target(self) -> None:
        page = self.new_page()
        session = start_chat(page, self.server.base_url, "Ann")
        hook = self.attach_hook(session["room_id"])
        first = self.webhook(hook, "crm-desk", "helo")
        second = self.webhook(hook, "crm-desk", "wrong room, sorry")
        self.wait_texts(page, ["helo", "wrong room, sorry"])

        off_loop(
            process_inbound,
            InboundMessage(
                channel_id=hook,
                sender="crm-desk",
                event_type=EventType.EDIT,
                content={"type": "edit", "target_event_id": first["event_id"], "new_content": {"type": "text", "body": "hello"}},
            ),
        )
        off_loop(
            process_inbound,
            InboundMessage(
                channel_id=hook,
                sender="crm-desk",
                event_type=EventType.DELETE,
                content={"type": "delete", "target_event_id": second["event_id"]},
            ),
        )
        page.reload()
        wait_connected(page)
        got = self.wait_texts(page, ["hello", "Message deleted"])
        self.assertEqual(
            [(b["eventId"], b["text"], b["deleted"]) for b in got],
            [(first["event_id"], "hello", False), (second["event_id"], "Message deleted", True)],
        )
        self.assertIn("edited", got[0]["foot"])

    def test_an_image_attachment_round_trip(self) -> None:
        ann = self.new_page()
        ann_session = start_chat(ann, self.server.base_url, "Ann")
        bob = self.new_page()
        open_with_session(bob, self.server.base_url, chat_session_join(ann_session["room_id"], display_name="Bob"), "Bob")
        image = png_bytes(40, 24, (10, 120, 200))

        # The page refuses what the server would refuse, before uploading.
        ann.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"}])
        wait_until(lambda: "Only PNG" in ann.inner_text("#composer-error"), message="a clear refusal")
        self.assertTrue(ann.locator("#attachment").is_hidden())

        ann.set_input_files("#file", files=[{"name": "logo.png", "mimeType": "image/png", "buffer": image}])
        wait_until(lambda: ann.locator("#attachment").is_visible(), message="the preview")
        ann.fill("#text", "Our new logo")
        ann.press("#text", "Enter")

        def loaded(page: Any) -> dict[str, Any] | None:
            for b in bubbles(page):
                if b["images"] and b["images"][0]["w"] == 40:
                    return b
            return None

        on_bob = wait_until(lambda: loaded(bob), timeout=15, message="Bob sees the picture")
        self.assertEqual((on_bob["name"], on_bob["text"], on_bob["mine"]), ("Ann", "Our new logo", False))
        self.assertTrue(on_bob["images"][0]["src"].startswith(self.server.base_url + "/media/chat/"), on_bob)
        on_ann = wait_until(lambda: loaded(ann), message="Ann sees her picture")
        self.assertTrue(on_ann["mine"])

        [row] = _message_rows(ann_session["room_id"])
        self.assertEqual(
            {k: row.content[k] for k in ("type", "mime_type", "filename", "size", "caption")},
            {"type": "media", "mime_type": "image/png", "filename": "logo.png", "size": len(image), "caption": "Our new logo"},
        )
        stored = [p for p in self.server.media_root.rglob("*.png")]
        self.assertEqual([p.read_bytes() for p in stored], [image])

    def test_an_invalid_session_is_replaced_by_a_new_one(self) -> None:
        page = self.new_page()
        first = start_chat(page, self.server.base_url, "Ann")
        send_text(page, "in the first room")
        self.wait_texts(page, ["in the first room"])
        room_close(room_id=first["room_id"])

        page.reload()  # the token's room is closed: the socket is refused with 4401
        renewed = wait_until(lambda: (s := session_of(page)) and s["room_id"] != first["room_id"] and s, message="a new session")
        wait_connected(page)
        self.assertEqual(texts(page), [])
        send_text(page, "in the new room")
        self.wait_texts(page, ["in the new room"])
        [row] = _message_rows(renewed["room_id"])
        self.assertEqual(row.source_participant.display_name, "Ann")


@unittest.skipUnless(E2E_ENABLED, SKIP_REASON)
class StreamedReplyBrowserTests(TransactionTestCase):
    """A reply streamed over the channel layer: a Daphne on Redis, the test publishing through Redis too."""

    def setUp(self) -> None:
        sync_playwright = require_browser()
        url = settings.REDIS_URL or E2E_REDIS_URL
        if not redis_up(url):
            raise AssertionError(
                f"Redis is not answering at {url}: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no"
            )
        if not settings.REDIS_URL:
            layers = override_settings(
                CHANNEL_LAYERS={
                    "default": {
                        "BACKEND": "channels_redis.core.RedisChannelLayer",
                        "CONFIG": {"hosts": [{"address": url, "socket_timeout": None}], "capacity": 1000, "expiry": 60},
                    }
                }
            )
            layers.enable()
            self.addCleanup(layers.disable)
        previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
        self.addCleanup(
            lambda: (
                os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
                if previous is None
                else os.environ.__setitem__("DJANGO_ALLOW_ASYNC_UNSAFE", previous)
            )
        )
        self.server = ChatServer(REDIS_URL=url)
        self.addCleanup(self.server.stop)
        self.server.start()
        playwright = sync_playwright().start()
        self.addCleanup(playwright.stop)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        self.addCleanup(browser.close)
        context = browser.new_context(viewport={"width": 1000, "height": 760})
        context.add_init_script(RECORD_ADDED)
        self.page = context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def test_a_streamed_reply_grows_then_becomes_the_stored_event(self) -> None:
        from rooms.realtime import broadcast as realtime

        def publish(fn: Any, *args: Any) -> None:
            # From a thread without a loop, as a generation worker publishes.
            off_loop(lambda: (fn(*args), realtime.flush_background()))

        page = self.page
        session = start_chat(page, self.server.base_url, "Ann")
        room_id = session["room_id"]
        make_channel("assistant", channel_type=ChannelType.AI, provider="", category=ChannelCategory.INTELLIGENCE)
        stream_id = f"st-{uuid.uuid4().hex[:8]}"
        streamed = "#messages .msg[data-stream-id]"

        # The agent looks something up first: a status line in the customer's words, never a message,
        # never the tool's name, and gone when the tool ends.
        publish(
            realtime.publish_tool_call_start,
            room_id,
            "assistant",
            [{"id": "c1", "name": "lookup_order", "label": "Looking up your order…"}],
        )
        wait_until(lambda: "Looking up your order…" in page.inner_text("#activity"), message="the tool's label is shown")
        self.assertNotIn("lookup_order", page.inner_text("#activity"))
        publish(realtime.publish_tool_call_end, room_id, "assistant", 12)
        wait_until(lambda: page.inner_text("#activity").strip() == "", message="nothing is left when the tool ends")

        publish(realtime.publish_stream_start, room_id, stream_id, "assistant")
        wait_until(lambda: page.locator(streamed).count() == 1, message="a reply bubble appears at stream_start")
        seen: list[str] = []
        chunks = ["The answer ", "is forty", "-two."]
        for i, chunk in enumerate(chunks):
            publish(realtime.publish_stream_chunk, room_id, stream_id, chunk)
            expected = "".join(chunks[: i + 1])
            seen.append(
                wait_until(
                    lambda exp=expected: (t := page.inner_text(f"{streamed} .text")) == exp and t,
                    message=f"the bubble reads {expected!r}",
                )
            )
        self.assertEqual(seen, ["The answer ", "The answer is forty", "The answer is forty-two."])
        self.assertEqual(bubbles(page), [], "nothing stored is shown yet")

        def finish() -> Any:
            final = process_inbound(
                InboundMessage(channel_id="assistant", room_id=room_id, text="The answer is forty-two.", display_name="Assistant")
            )
            realtime.publish_stream_end(room_id, stream_id, final.event_id)
            realtime.flush_background()
            return final

        final = off_loop(finish)
        got = wait_until(
            lambda: (b := bubbles(page)) and page.locator(streamed).count() == 0 and b,
            message="the stored reply replaces the streamed one",
        )
        self.assertEqual(
            [(b["eventId"], b["text"], b["name"]) for b in got], [(final.event_id, "The answer is forty-two.", "Assistant")]
        )
        self.assertEqual(page.locator("#messages .msg").count(), 1, "no duplicate of the reply")
        self.assertEqual(page.evaluate("() => window.__rkAdded"), [final.seq])
        self.assertEqual(self.errors, [])


@unittest.skipUnless(E2E_ENABLED, SKIP_REASON)
class LivelyChatBrowserTests(BrowserTestCase):
    """The visitor's side of an AI conversation: greeting, demo badge, "thinking…", a reply that grows, a person joining.

    The demo's scripted agent answers in the server (in-process workers), at a pace slow enough to watch.
    """

    server_env = {"ROOMKIT_TASK_MODE": "thread"}

    def setUp(self) -> None:
        quiet_logger(self, "httpx")
        self.errors: list[str] = []

    def tearDown(self) -> None:
        if os.environ.get("ROOMKIT_E2E_SERVER_LOG"):
            print(self.server.output())
        self.assertEqual(self.errors, [], "script errors on the page")

    def new_page(self) -> Any:
        context = self.browser.new_context(viewport={"width": 1000, "height": 800})
        self.addCleanup(context.close)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        return page

    def test_greeting_badge_thinking_growing_reply_and_a_person_joining(self) -> None:
        from agents.services import conversation_takeover
        from tests.agents.helpers import make_agent

        # Slow on purpose: "thinking…" lasts the first-token delay, and each word comes 120 ms apart.
        make_agent(
            "helper", provider="scripted", name="Assistant", provider_config={"first_token_delay_ms": 1500, "word_delay_ms": 120}
        )
        make_channel(
            settings.ROOMKIT_WEBCHAT_CHANNEL_ID,
            channel_type=ChannelType.WEBSOCKET,
            provider="",
            config={
                "attach_on_create": ["helper"],
                "welcome_message": "Welcome to the shop! Ask us anything.",
                "reply_time": "We usually reply within a few minutes.",
            },
        )
        page = self.new_page()
        session = start_chat(page, self.server.base_url, "Ann", open_room=False)

        self.assertEqual(page.inner_text("#greeting-text"), "Welcome to the shop! Ask us anything.")
        self.assertEqual(page.inner_text("#reply-time"), "We usually reply within a few minutes.")
        self.assertTrue(page.is_visible("#greeting"))
        self.assertEqual(page.locator("text=/demo agent/i").count(), 1)
        self.assertTrue(page.is_visible("#demo-badge"))
        # The greeting is the page's, not the room's.
        self.assertFalse(Room.objects.filter(pk=session["room_id"]).exists())

        send_text(page, "hello there")
        streamed = "#messages .msg[data-stream-id] .text"
        wait_until(
            lambda: "Assistant is thinking…" in page.inner_text("#activity") and page.locator(streamed).count() == 0,
            message="the page says the assistant is thinking before its first token",
        )
        lengths: list[int] = []

        def grown() -> bool:
            if page.locator(streamed).count():
                n = len(page.inner_text(streamed))
                if n and (not lengths or n > lengths[-1]):
                    lengths.append(n)
            return len(lengths) >= 4

        wait_until(grown, timeout=20, interval=0.02, message="the streamed reply grows")
        self.assertEqual(lengths, sorted(set(lengths)))
        self.assertNotIn("thinking", page.inner_text("#activity"))
        reply = wait_until(
            lambda: next((b for b in bubbles(page) if b["name"] == "Assistant"), None),
            timeout=20,
            message="the stored reply replaces the stream",
        )
        self.assertIn("I'm a demo agent", reply["text"])
        self.assertNotIn("no AI model", reply["text"])
        self.assertGreater(len(reply["text"]), lengths[0])
        self.assertEqual(page.locator("text=/demo agent —/i").count(), 1)

        off_loop(conversation_takeover, session["room_id"], "sam1", operator_name="Sam")
        wait_until(
            lambda: "Sam joined the conversation" in page.locator("#messages .notice").all_inner_texts(),
            timeout=15,
            message="the visitor is told that Sam joined",
        )
        notices = " ".join(page.locator("#messages .notice").all_inner_texts())
        self.assertNotIn("took over", notices)
        self.assertNotIn("sam1", notices)
