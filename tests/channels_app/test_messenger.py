"""Messenger (provider ``messenger``): webhooks, sends to the fake Graph API, the window and tags, watermarks.

Payloads are the Messenger Platform's documented events
(channels_app/providers/meta/fixtures/messenger, README there), signed with
the fake's app secret; sends go over real HTTP to ``/{version}/me/messages``
with the page token, checked as the Send API checks them.
"""

from __future__ import annotations

import itertools
import json
import time
from datetime import timedelta

from django.test import TestCase
from django.utils import timezone

from channels_app import resilience
from channels_app.providers import get_provider
from channels_app.providers.meta.window import OBSERVATION_KIND
from rooms.enums import DeliveryStatus, Direction
from rooms.inbound import InboundMessage, process_inbound
from rooms.models import Channel, Delivery, Observation, RoomEvent
from rooms.services import channel_attach
from tests.channels_app.fakes.meta import FakeGraph, fixture
from tests.channels_app.helpers import error_of, row_counts, use_temporary_media_root
from tests.support import make_channel

URL = "/webhooks/fb/"
PAGE = "1234567890123456"
PSID = "6789012345678901"
SENDS = "/v21.0/me/messages"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def _event(payload: dict) -> dict:
    return payload["entry"][0]["messaging"][0]


class MessengerTestCase(TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.graph = cls.enterClassContext(FakeGraph())

    def setUp(self) -> None:
        resilience.reset_all()
        self.addCleanup(resilience.reset_all)
        self.graph.reset()
        self._ids = itertools.count(1)
        self.channel = make_channel(
            "fb",
            channel_type="messenger",
            provider="messenger",
            config={"page_id": PAGE, "api_base": self.graph.url, "api_version": "v21.0"},
            secrets={"page_access_token": self.graph.page_token, "app_secret": self.graph.app_secret, "verify_token": "vt"},
        )

    def post_webhook(self, payload: dict | bytes, *, headers: dict[str, str] | None = None):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        sent = self.graph.signed(body) if headers is None else headers
        extra = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in sent.items()}
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post(URL, data=body, content_type="application/json", **extra)

    def customer_writes(self, text: str = "hi") -> str:
        payload = fixture("messenger", "text.json")
        _event(payload)["message"].update(mid=f"m_IN{next(self._ids)}", text=text)
        r = self.post_webhook(payload)
        self.assertEqual(r.status_code, 200, r.content)
        return r.json()["room_id"]

    def say(self, room_id: str, content: dict | str) -> Delivery:
        if not Channel.objects.filter(pk="hook-in").exists():
            make_channel("hook-in", secrets={"signing_secret": "in-secret"})
            channel_attach(room_id=room_id, channel_id="hook-in", address="crm-1")
        if isinstance(content, str):
            content = {"type": "text", "body": content}
        with self.captureOnCommitCallbacks(execute=True):
            result = process_inbound(
                InboundMessage(
                    channel_id="hook-in",
                    sender="crm-1",
                    room_id=room_id,
                    content=content,
                    provider_message_id=f"m-{next(self._ids)}",
                )
            )
        return Delivery.objects.get(event_id=result.event_id, channel_id="fb")

    def sent_bodies(self) -> list[dict]:
        sends = self.graph.requests_to(SENDS)
        for s in sends:
            self.assertEqual(s.headers["authorization"], f"Bearer {self.graph.page_token}")
        return [s.json() for s in sends]


class MessengerWebhookTests(MessengerTestCase):
    def test_handshake(self) -> None:
        r = self.client.get(URL, {"hub.mode": "subscribe", "hub.verify_token": "vt", "hub.challenge": "42"})
        self.assertEqual((r.status_code, r.content), (200, b"42"))
        error_of(self, self.client.get(URL, {"hub.mode": "subscribe", "hub.verify_token": "no", "hub.challenge": "42"}), 403)

    def test_a_bad_signature_is_403_and_stores_nothing(self) -> None:
        before = row_counts()
        body = json.dumps(fixture("messenger", "text.json")).encode()
        for headers in ({}, self.graph.signed(body, secret="other")):
            error_of(self, self.post_webhook(body, headers=headers), 403, "invalid_signature")
        self.assertEqual(row_counts(), before)

    def test_a_page_message_is_an_event_from_the_psid_and_a_repeat_stores_nothing(self) -> None:
        first = self.post_webhook(fixture("messenger", "text.json")).json()
        counts = row_counts()
        again = self.post_webhook(fixture("messenger", "text.json")).json()

        event = RoomEvent.objects.get(pk=first["event_id"])
        self.assertEqual(event.content, {"type": "text", "body": "hello, world!"})
        self.assertEqual(event.source_participant.address, PSID)
        self.assertEqual(event.provider_message_id, "m_1457764197618:41d102a3e1ae206a38")
        self.assertEqual((again["event_id"], again["duplicate"]), (first["event_id"], True))
        self.assertEqual(row_counts(), counts)

    def test_quick_replies_and_postbacks_are_their_title_with_the_payload_in_metadata(self) -> None:
        quick = RoomEvent.objects.get(pk=self.post_webhook(fixture("messenger", "quick_reply.json")).json()["event_id"])
        postback = RoomEvent.objects.get(pk=self.post_webhook(fixture("messenger", "postback.json")).json()["event_id"])

        self.assertEqual(quick.content, {"type": "text", "body": "Red"})
        self.assertEqual(quick.metadata["reply"]["id"], "DEVELOPER_DEFINED_PAYLOAD_FOR_PICKING_RED")
        self.assertEqual(postback.content, {"type": "text", "body": "Start Chatting"})
        self.assertEqual(
            postback.metadata["reply"], {"kind": "postback", "id": "USER_DEFINED_PAYLOAD", "title": "Start Chatting"}
        )

    def test_an_attachment_is_fetched_and_stored(self) -> None:
        media_root = use_temporary_media_root(self, public_base_url="https://rk.example")
        self.graph.media["img1"] = (PNG, "image/png")
        payload = fixture("messenger", "attachment.json")
        _event(payload)["message"]["attachments"][0]["payload"]["url"] = f"{self.graph.url}/public/img1"

        event = RoomEvent.objects.get(pk=self.post_webhook(payload).json()["event_id"])

        self.assertEqual((event.content["type"], event.content["mime_type"]), ("media", "image/png"))
        self.assertTrue(event.content["url"].startswith("https://rk.example/"))
        self.assertEqual([p.read_bytes() for p in media_root.rglob("*") if p.is_file()], [PNG])
        # Messenger's links need no token: none is sent.
        self.assertNotIn("authorization", self.graph.requests_to("/public/img1")[0].headers)

    def test_an_attachment_that_cannot_be_fetched_keeps_the_message(self) -> None:
        use_temporary_media_root(self, public_base_url="https://rk.example")
        payload = fixture("messenger", "attachment.json")
        _event(payload)["message"]["attachments"][0]["payload"]["url"] = f"{self.graph.url}/public/gone"

        event = RoomEvent.objects.get(pk=self.post_webhook(payload).json()["event_id"])

        self.assertEqual(event.content, {"type": "text", "body": "[image/* could not be retrieved]"})
        self.assertEqual(event.metadata["media_errors"][0]["error"], "http_404")

    def test_echoes_are_not_stored_and_unknown_pages_are_ignored(self) -> None:
        before = row_counts()
        self.assertEqual(self.post_webhook(fixture("messenger", "echo.json")).json(), {"ignored": True})
        other = fixture("messenger", "text.json")
        other["entry"][0]["id"] = "999"
        self.assertEqual(self.post_webhook(other).json(), {"ignored": True})
        self.assertEqual(row_counts(), before)

    def test_malformed_bodies_are_400(self) -> None:
        before = row_counts()
        for payload in (
            b"{}",
            {"object": "page", "entry": [{"id": PAGE, "messaging": {}}]},
            {"object": "page", "entry": [{"id": PAGE, "messaging": [{"message": {"mid": "x"}}]}]},
        ):
            r = self.post_webhook(payload)
            self.assertEqual(r.status_code, 400, r.content)
        self.assertEqual(row_counts(), before)


class MessengerSendTests(MessengerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.room_id = self.customer_writes("hi")

    def test_text_is_a_response_to_the_psid_with_the_page_token(self) -> None:
        delivery = self.say(self.room_id, "Hello there")

        self.assertEqual(delivery.status, DeliveryStatus.SENT, delivery.last_error)
        self.assertEqual(
            self.sent_bodies(), [{"recipient": {"id": PSID}, "messaging_type": "RESPONSE", "message": {"text": "Hello there"}}]
        )
        self.assertTrue(delivery.provider_message_id.startswith("m_FAKE"))

    def test_quick_replies_buttons_and_cards_are_native(self) -> None:
        self.say(self.room_id, {"type": "rich", "body": "Colour?", "quick_replies": ["Red", "Blue"]})
        self.say(
            self.room_id, {"type": "rich", "body": "Track it", "buttons": [{"title": "Track", "url": "https://rk.example/t"}]}
        )
        self.say(
            self.room_id,
            {
                "type": "rich",
                "body": "Ours",
                "cards": [{"title": "Blue", "description": "The blue one", "buttons": [{"title": "Buy", "payload": "buy-blue"}]}],
            },
        )
        quick, button, generic = (b["message"] for b in self.sent_bodies())

        self.assertEqual([q["title"] for q in quick["quick_replies"]], ["Red", "Blue"])
        self.assertEqual(button["attachment"]["payload"]["template_type"], "button")
        self.assertEqual(
            button["attachment"]["payload"]["buttons"], [{"type": "web_url", "url": "https://rk.example/t", "title": "Track"}]
        )
        element = generic["attachment"]["payload"]["elements"][0]
        self.assertEqual((element["title"], element["subtitle"]), ("Blue", "The blue one"))
        self.assertEqual(element["buttons"], [{"type": "postback", "title": "Buy", "payload": "buy-blue"}])

    def test_beyond_the_limits_rich_content_is_text(self) -> None:
        delivery = self.say(self.room_id, {"type": "rich", "body": "Pick", "quick_replies": [f"Option {i}" for i in range(14)]})

        self.assertEqual(delivery.status, DeliveryStatus.SENT, delivery.last_error)
        self.assertEqual(list(self.sent_bodies()[0]["message"]), ["text"])

    def test_a_captioned_image_is_the_file_then_its_caption(self) -> None:
        self.say(self.room_id, {"type": "media", "url": "https://rk.example/a.png", "mime_type": "image/png", "caption": "Here"})

        first, second = (b["message"] for b in self.sent_bodies())
        self.assertEqual(
            first["attachment"], {"type": "image", "payload": {"url": "https://rk.example/a.png", "is_reusable": True}}
        )
        self.assertEqual(second, {"text": "Here"})

    def test_outside_the_window_a_send_needs_a_tag(self) -> None:
        RoomEvent.objects.filter(room_id=self.room_id, direction=Direction.INBOUND, source_channel_id="fb").update(
            created_at=timezone.now() - timedelta(hours=25)
        )

        refused = self.say(self.room_id, "Still there?")
        tagged = self.say(
            self.room_id, {"type": "text", "body": "Your account changed", "metadata": {"message_tag": "ACCOUNT_UPDATE"}}
        )

        self.assertEqual((refused.status, refused.error_code), (DeliveryStatus.FAILED, "outside_window"))
        self.assertIn("message tag", refused.last_error)
        self.assertTrue(
            Observation.objects.filter(room_id=self.room_id, kind=OBSERVATION_KIND, event_id=refused.event_id).exists()
        )
        self.assertEqual(tagged.status, DeliveryStatus.SENT, tagged.last_error)
        [body] = self.sent_bodies()
        self.assertEqual((body["messaging_type"], body["tag"]), ("MESSAGE_TAG", "ACCOUNT_UPDATE"))

    def test_metas_window_error_is_permanent(self) -> None:
        self.graph.refuse[PSID] = (400, 10, "This message is sent outside of allowed window.")

        delivery = self.say(self.room_id, "hello")

        self.assertEqual((delivery.status, delivery.error_code), (DeliveryStatus.FAILED, "10"))

    def test_typing_and_seen_are_sender_actions(self) -> None:
        provider = get_provider("messenger")
        for action in ("typing_on", "mark_seen"):
            self.assertTrue(provider.send_sender_action(self.channel, recipient=PSID, action=action).ok)
        self.assertEqual(
            self.sent_bodies(),
            [
                {"recipient": {"id": PSID}, "sender_action": "typing_on"},
                {"recipient": {"id": PSID}, "sender_action": "mark_seen"},
            ],
        )
        with self.assertRaises(ValueError):
            provider.send_sender_action(self.channel, recipient=PSID, action="dance")


class MessengerWatermarkTests(MessengerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.room_id = self.customer_writes("hi")
        self.one = self.say(self.room_id, "one")
        self.two = self.say(self.room_id, "two")

    def watermark(self, name: str, when_ms: int) -> dict:
        payload = fixture("messenger", name)
        _event(payload)[name.removesuffix(".json")]["watermark"] = when_ms
        return payload

    def test_a_delivery_watermark_marks_every_earlier_send_delivered_and_read_goes_further(self) -> None:
        now_ms = int(time.time() * 1000) + 1000

        r = self.post_webhook(self.watermark("delivery.json", now_ms))

        self.assertEqual(r.json(), {"updated": 2})
        self.assertEqual(
            {d.status for d in Delivery.objects.filter(pk__in=[self.one.pk, self.two.pk])}, {DeliveryStatus.DELIVERED}
        )
        self.post_webhook(self.watermark("read.json", now_ms))
        self.assertEqual({d.status for d in Delivery.objects.filter(pk__in=[self.one.pk, self.two.pk])}, {DeliveryStatus.READ})
        # A late delivery watermark moves nothing back.
        self.assertEqual(self.post_webhook(self.watermark("delivery.json", now_ms)).json(), {"ignored": True})

    def test_a_watermark_before_a_send_leaves_it_alone(self) -> None:
        Delivery.objects.filter(pk=self.two.pk).update(sent_at=timezone.now() + timedelta(minutes=5))

        self.post_webhook(self.watermark("delivery.json", int(time.time() * 1000) + 1000))

        self.assertEqual(Delivery.objects.get(pk=self.one.pk).status, DeliveryStatus.DELIVERED)
        self.assertEqual(Delivery.objects.get(pk=self.two.pk).status, DeliveryStatus.SENT)
