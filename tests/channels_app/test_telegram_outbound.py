"""Outbound Telegram: each content kind through its Bot API method, against the fake Bot API over real HTTP.

The fake checks the token in the path and the body as Telegram does; the
delivery records Telegram's message_id. Errors come back in Telegram's
``{"ok": false, "error_code", "description", "parameters"}``.
"""

from __future__ import annotations

from rooms.enums import DeliveryStatus
from tests.channels_app.fakes.telegram import error, fixture
from tests.channels_app.helpers import run_until_settled
from tests.channels_app.test_telegram_support import CHAT, TelegramTestCase


class TelegramOutboundTests(TelegramTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.make_telegram_channel()
        self.open_room()

    def only_call(self, method: str) -> dict:
        calls = self.telegram.calls(method)
        self.assertEqual(len(calls), 1, [r.path for r in self.telegram.requests])
        return calls[0]

    def test_text_goes_with_send_message_and_the_delivery_records_the_message_id(self) -> None:
        delivery = self.say("Hello from RoomKit")
        self.assertEqual(delivery.status, DeliveryStatus.SENT, delivery.last_error)
        self.assertEqual(self.only_call("sendMessage"), {"chat_id": CHAT, "text": "Hello from RoomKit"})
        self.assertEqual(delivery.provider_message_id, str(self.telegram.sent[0][2]))
        self.assertIsNotNone(delivery.sent_at)
        self.assertTrue(self.telegram.requests[-1].path.startswith(f"/bot{self.telegram.token}/"))

    def test_buttons_and_quick_replies_become_an_inline_keyboard(self) -> None:
        rich = {
            "type": "rich",
            "body": "How can we help?",
            "buttons": [
                {"title": "Track my order", "payload": "track_order"},
                {"title": "Our site", "url": "https://example.com"},
            ],
            "quick_replies": ["Yes", "No", "Maybe", "Later"],
        }
        delivery = self.say(rich)
        self.assertEqual(delivery.status, DeliveryStatus.SENT, delivery.last_error)
        body = self.only_call("sendMessage")
        self.assertEqual(body["text"], "How can we help?")
        self.assertEqual(
            body["reply_markup"]["inline_keyboard"],
            [
                [{"text": "Track my order", "callback_data": "track_order"}],
                [{"text": "Our site", "url": "https://example.com"}],
                [
                    {"text": "Yes", "callback_data": "Yes"},
                    {"text": "No", "callback_data": "No"},
                    {"text": "Maybe", "callback_data": "Maybe"},
                ],
                [{"text": "Later", "callback_data": "Later"}],
            ],
        )

    def test_options_beyond_telegrams_limits_fall_back_to_text(self) -> None:
        long_payload = "x" * 65
        rich = {
            "type": "rich",
            "body": "Pick one",
            "buttons": [{"title": "Too long", "payload": long_payload}, {"title": "Call us", "phone": "+15551234567"}],
            "quick_replies": [f"option {i}" for i in range(120)],
        }
        delivery = self.say(rich)
        self.assertEqual(delivery.status, DeliveryStatus.SENT, delivery.last_error)
        body = self.only_call("sendMessage")
        buttons = [b for row in body["reply_markup"]["inline_keyboard"] for b in row]
        self.assertEqual(len(buttons), 100)
        self.assertTrue(all(len(b["callback_data"].encode()) <= 64 for b in buttons))
        self.assertIn("Too long", body["text"])
        self.assertIn("Call us: +15551234567", body["text"])
        self.assertIn("option 119", body["text"])

    def test_a_picture_a_file_a_voice_note_and_a_location(self) -> None:
        cases = [
            (
                {"type": "media", "url": "https://cdn.example/p.jpg", "mime_type": "image/jpeg", "caption": "c" * 2000},
                "sendPhoto",
                "photo",
            ),
            ({"type": "media", "url": "https://cdn.example/i.pdf", "mime_type": "application/pdf"}, "sendDocument", "document"),
            ({"type": "audio", "url": "https://cdn.example/v.ogg", "mime_type": "audio/ogg"}, "sendVoice", "voice"),
        ]
        for content, method, field in cases:
            with self.subTest(method=method):
                delivery = self.say(content)
                self.assertEqual(delivery.status, DeliveryStatus.SENT, delivery.last_error)
                body = self.only_call(method)
                self.assertEqual((body["chat_id"], body[field]), (CHAT, content["url"]))
                if "caption" in content:
                    self.assertEqual(len(body["caption"]), 1024)
        delivery = self.say({"type": "location", "latitude": 48.858093, "longitude": 2.294694})
        self.assertEqual(delivery.status, DeliveryStatus.SENT, delivery.last_error)
        self.assertEqual(self.only_call("sendLocation"), {"chat_id": CHAT, "latitude": 48.858093, "longitude": 2.294694})

    def test_a_blocked_bot_fails_at_once_and_does_not_count_against_the_breaker(self) -> None:
        self.telegram.blocked.add(CHAT)
        delivery = self.say("are you there?")
        self.assertEqual(delivery.status, DeliveryStatus.FAILED)
        self.assertEqual(delivery.error_code, "403")
        self.assertIn("bot was blocked by the user", delivery.last_error)
        self.assertEqual(delivery.attempts, 1)

    def test_a_bad_request_fails_at_once(self) -> None:
        self.telegram.next_errors.append((400, fixture("error_400_chat_not_found.json")))
        delivery = self.say("hello")
        self.assertEqual((delivery.status, delivery.error_code), (DeliveryStatus.FAILED, "400"))

    def test_flood_control_waits_its_retry_after_then_sends(self) -> None:
        self.telegram.next_errors.append((429, error(429, "Too Many Requests: retry after 1", retry_after=1)))
        delivery = self.say("hello")
        self.assertEqual(delivery.status, DeliveryStatus.PENDING)
        self.assertEqual(delivery.error_code, "429")
        wait = (delivery.next_attempt_at - delivery.updated_at).total_seconds()
        self.assertGreaterEqual(wait, 0.9)
        settled = run_until_settled(delivery.pk, timeout=5)
        self.assertEqual(settled.status, DeliveryStatus.SENT, settled.last_error)
        self.assertEqual(settled.attempts, 2)

    def test_a_telegram_5xx_is_retried(self) -> None:
        self.telegram.next_errors.append((502, error(502, "Bad Gateway")))
        delivery = self.say("hello")
        self.assertEqual(delivery.status, DeliveryStatus.PENDING)
        self.assertEqual(run_until_settled(delivery.pk, timeout=10).status, DeliveryStatus.SENT)

    def test_a_wrong_token_fails_without_showing_it(self) -> None:
        self.make_telegram_channel("tg-bad", secrets={"bot_token": "999:WRONG-token", "webhook_secret": "x"})
        self.open_room("tg-bad")
        delivery = self.say("hello", channel_id="tg-bad")
        self.assertEqual((delivery.status, delivery.error_code), (DeliveryStatus.FAILED, "401"))
        self.assertNotIn("WRONG-token", delivery.last_error)

    def test_no_answer_is_retryable_and_the_error_names_no_token(self) -> None:
        self.make_telegram_channel(
            "tg-down", api_base="http://127.0.0.1:9", secrets={"bot_token": "42:SECRET", "webhook_secret": "x"}
        )
        self.open_room("tg-down")
        delivery = self.say("hello", channel_id="tg-down")
        self.assertEqual((delivery.status, delivery.error_code), (DeliveryStatus.PENDING, "network"))
        self.assertNotIn("SECRET", delivery.last_error)
