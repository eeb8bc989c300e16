"""WhatsApp sends to the fake Graph API over real HTTP: every kind, Meta's limits, templates, the 24-hour window, errors.

Each delivery goes through ``delivery_attempt`` and the adapter's real HTTP
call; the fake checks the Bearer token, the path
(``/{version}/{phone_number_id}/messages``) and the message object as Meta
does (interactive limits, template shape).
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from channels_app.providers.meta.window import OBSERVATION_KIND
from rooms.enums import DeliveryStatus, Direction
from rooms.models import Observation, RoomEvent
from rooms.selectors import clear_channel_cache
from tests.channels_app.test_whatsapp_support import CUSTOMER, WhatsAppTestCase

SENDS = "/v21.0/106540352242922/messages"


class OutboundTests(WhatsAppTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.room_id = self.customer_writes("hi")

    def sent_body(self) -> dict:
        sends = self.graph.requests_to(SENDS)
        self.assertEqual(len(sends), 1)
        self.assertEqual(sends[0].headers["authorization"], f"Bearer {self.graph.access_token}")
        return sends[0].json()

    def test_text_goes_with_the_token_to_the_number_and_records_the_wamid(self) -> None:
        delivery = self.say(self.room_id, "Yes, in blue and red.")

        body = self.sent_body()
        self.assertEqual(delivery.status, DeliveryStatus.QUEUED, delivery.last_error)
        self.assertEqual(
            body,
            {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": CUSTOMER.removeprefix("+"),
                "type": "text",
                "text": {"body": "Yes, in blue and red.", "preview_url": False},
            },
        )
        self.assertIn(delivery.provider_message_id, self.graph.messages)

    def test_media_go_by_link_typed_by_their_mime_type(self) -> None:
        cases = [
            ({"type": "media", "url": "https://rk.example/a.png", "mime_type": "image/png", "caption": "Look"}, "image"),
            ({"type": "media", "url": "https://rk.example/a.mp4", "mime_type": "video/mp4"}, "video"),
            (
                {"type": "media", "url": "https://rk.example/a.pdf", "mime_type": "application/pdf", "filename": "a.pdf"},
                "document",
            ),
        ]
        for content, kind in cases:
            with self.subTest(kind):
                self.graph.requests.clear()
                delivery = self.say(self.room_id, content)
                body = self.sent_body()
                self.assertEqual(delivery.status, DeliveryStatus.QUEUED, delivery.last_error)
                self.assertEqual(body["type"], kind)
                self.assertEqual(body[kind]["link"], content["url"])
        self.assertEqual(self.graph.messages[delivery.provider_message_id]["document"]["filename"], "a.pdf")

    def test_location(self) -> None:
        self.say(self.room_id, {"type": "location", "latitude": 37.48, "longitude": -122.14, "label": "HQ"})

        self.assertEqual(self.sent_body()["location"], {"latitude": 37.48, "longitude": -122.14, "name": "HQ"})

    def test_up_to_three_short_options_are_reply_buttons(self) -> None:
        content = {
            "type": "rich",
            "body": "Keep the appointment?",
            "buttons": [{"title": "Keep", "payload": "keep"}],
            "quick_replies": ["Cancel"],
        }

        delivery = self.say(self.room_id, content)

        self.assertEqual(delivery.status, DeliveryStatus.QUEUED, delivery.last_error)
        interactive = self.sent_body()["interactive"]
        self.assertEqual(interactive["type"], "button")
        self.assertEqual(interactive["body"], {"text": "Keep the appointment?"})
        self.assertEqual(
            interactive["action"]["buttons"],
            [
                {"type": "reply", "reply": {"id": "keep", "title": "Keep"}},
                {"type": "reply", "reply": {"id": "Cancel", "title": "Cancel"}},
            ],
        )

    def test_more_options_or_longer_titles_become_a_list(self) -> None:
        options = ["Priority Mail Express", "Priority Mail", "First class", "Ground"]
        delivery = self.say(self.room_id, {"type": "rich", "body": "Shipping?", "quick_replies": options})

        self.assertEqual(delivery.status, DeliveryStatus.QUEUED, delivery.last_error)
        interactive = self.sent_body()["interactive"]
        self.assertEqual(interactive["type"], "list")
        self.assertEqual([r["title"] for r in interactive["action"]["sections"][0]["rows"]], options)

    def test_beyond_meta_limits_rich_content_falls_back_to_text(self) -> None:
        cases = {
            "eleven options": {"type": "rich", "body": "Pick", "quick_replies": [f"Option {i}" for i in range(11)]},
            "a title over 24 characters": {"type": "rich", "body": "Pick", "quick_replies": ["A very long option title indeed"]},
            "a link button": {
                "type": "rich",
                "body": "Track it",
                "buttons": [{"title": "Track", "url": "https://rk.example/t/1"}],
            },
            "cards": {"type": "rich", "body": "Ours", "cards": [{"title": "Blue", "description": "The blue one"}]},
        }
        for name, content in cases.items():
            with self.subTest(name):
                self.graph.requests.clear()
                delivery = self.say(self.room_id, content)
                body = self.sent_body()
                self.assertEqual(delivery.status, DeliveryStatus.QUEUED, delivery.last_error)
                self.assertEqual(body["type"], "text")
                self.assertTrue(body["text"]["body"].startswith(content["body"]))
                if name == "a link button":
                    self.assertIn("Track: https://rk.example/t/1", body["text"]["body"])

    def test_a_template_goes_with_its_language_and_parameters(self) -> None:
        content = {
            "type": "template",
            "name": "order_confirmation",
            "language": "en_US",
            "parameters": ["Pablo", "860198-230332"],
        }

        delivery = self.say(self.room_id, content)

        self.assertEqual(delivery.status, DeliveryStatus.QUEUED, delivery.last_error)
        self.assertEqual(
            self.sent_body()["template"],
            {
                "name": "order_confirmation",
                "language": {"code": "en_US"},
                "components": [
                    {"type": "body", "parameters": [{"type": "text", "text": "Pablo"}, {"type": "text", "text": "860198-230332"}]}
                ],
            },
        )

    def test_named_template_parameters(self) -> None:
        self.say(self.room_id, {"type": "template", "name": "greeting", "parameters": {"first_name": "Jessica"}})

        template = self.sent_body()["template"]
        self.assertEqual(template["language"], {"code": "en_US"})
        self.assertEqual(
            template["components"][0]["parameters"], [{"type": "text", "parameter_name": "first_name", "text": "Jessica"}]
        )


class ServiceWindowTests(WhatsAppTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.room_id = self.customer_writes("hi")
        # The customer's last message is a day and a minute old: the window has closed.
        RoomEvent.objects.filter(room_id=self.room_id, direction=Direction.INBOUND, source_channel_id="wa").update(
            created_at=timezone.now() - timedelta(hours=24, minutes=1)
        )

    def test_a_free_form_send_outside_the_window_is_refused_with_an_observation(self) -> None:
        delivery = self.say(self.room_id, "Are you still there?")

        self.assertEqual(delivery.status, DeliveryStatus.FAILED)
        self.assertEqual(delivery.error_code, "outside_window")
        self.assertIn("24-hour customer-service window", delivery.last_error)
        self.assertIn("template", delivery.last_error)
        self.assertEqual(delivery.attempts, 1)
        self.assertEqual(self.graph.requests_to(SENDS), [])
        observation = Observation.objects.get(room_id=self.room_id, kind=OBSERVATION_KIND)
        self.assertEqual(observation.event_id, delivery.event_id)
        self.assertIn("24-hour", observation.summary)

    def test_a_template_outside_the_window_is_sent(self) -> None:
        delivery = self.say(self.room_id, {"type": "template", "name": "order_confirmation", "parameters": ["Pablo", "1"]})

        self.assertEqual(delivery.status, DeliveryStatus.QUEUED, delivery.last_error)
        self.assertEqual(len(self.graph.requests_to(SENDS)), 1)
        self.assertFalse(Observation.objects.filter(room_id=self.room_id, kind=OBSERVATION_KIND).exists())

    def test_the_customer_writing_again_reopens_the_window(self) -> None:
        self.customer_writes("back again")

        delivery = self.say(self.room_id, "Welcome back")

        self.assertEqual(delivery.status, DeliveryStatus.QUEUED, delivery.last_error)


class ErrorTests(WhatsAppTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.room_id = self.customer_writes("hi")
        self.to = CUSTOMER.removeprefix("+")

    def test_a_permanent_meta_error_fails_at_once_with_its_code(self) -> None:
        self.graph.refuse[self.to] = (400, 131026, "Message undeliverable")

        delivery = self.say(self.room_id, "hello")

        self.assertEqual((delivery.status, delivery.error_code, delivery.attempts), (DeliveryStatus.FAILED, "131026", 1))
        self.assertIn("Message undeliverable", delivery.last_error)

    def test_throttling_sent_as_a_400_is_retried(self) -> None:
        self.graph.refuse[self.to] = (400, 130429, "Rate limit hit")

        delivery = self.say(self.room_id, "hello")

        self.assertEqual((delivery.status, delivery.error_code), (DeliveryStatus.PENDING, "130429"))
        self.assertIsNotNone(delivery.next_attempt_at)

    def test_a_bad_token_fails_without_retry(self) -> None:
        self.channel.set_secrets({"access_token": "wrong", "app_secret": "s", "verify_token": "v"})
        self.channel.save()
        clear_channel_cache()

        delivery = self.say(self.room_id, "hello")

        self.assertEqual((delivery.status, delivery.error_code), (DeliveryStatus.FAILED, "190"))
