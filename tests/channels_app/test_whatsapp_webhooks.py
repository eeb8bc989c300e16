"""WhatsApp Cloud API webhooks on ``/webhooks/<channel_id>/``: the handshake, the signature, every message type.

Payloads are Meta's documented examples (channels_app/providers/meta/fixtures/whatsapp,
README there), signed with the fake's app secret. Media are fetched from the
fake Graph server through ``GET /{media_id}`` and the CDN URL it answers, both
with the access token, and stored as other vendors' inbound media are.
"""

from __future__ import annotations

import json

from django.core.files.storage import default_storage

from rooms.enums import EventType
from rooms.models import ChannelBinding, RoomEvent
from tests.channels_app.fakes.meta import fixture
from tests.channels_app.helpers import error_of, row_counts, use_temporary_media_root
from tests.channels_app.test_whatsapp_support import URL, VERIFY_TOKEN, WhatsAppTestCase

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
OGG = b"OggS" + b"\x00" * 64


def _message(payload: dict) -> dict:
    return payload["entry"][0]["changes"][0]["value"]["messages"][0]


class HandshakeTests(WhatsAppTestCase):
    def test_the_right_verify_token_answers_the_challenge_as_plain_text(self) -> None:
        r = self.client.get(URL, {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"})

        self.assertEqual(r.status_code, 200)
        self.assertEqual(r.content, b"1158201444")
        self.assertTrue(r["Content-Type"].startswith("text/plain"))

    def test_a_wrong_token_or_mode_is_403(self) -> None:
        for params in (
            {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"},
            {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
            {"hub.challenge": "1"},
        ):
            with self.subTest(params):
                error_of(self, self.client.get(URL, params), 403, "verification_failed")

    def test_a_missing_challenge_is_400(self) -> None:
        error_of(self, self.client.get(URL, {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN}), 400)


class SignatureTests(WhatsAppTestCase):
    def test_a_valid_signature_is_accepted(self) -> None:
        r = self.post_webhook(fixture("whatsapp", "text.json"))

        self.assertEqual(r.status_code, 200, r.content)
        self.assertEqual(r.json()["status"], "stored")

    def test_missing_wrong_or_foreign_signatures_are_403_and_store_nothing(self) -> None:
        body = json.dumps(fixture("whatsapp", "text.json")).encode()
        good = self.graph.signed(body)["X-Hub-Signature-256"]
        cases = {
            "missing": {},
            "another secret": self.graph.signed(body, secret="not-the-app-secret"),
            "another body": self.graph.signed(body + b" "),
            "no prefix": {"X-Hub-Signature-256": good.removeprefix("sha256=")},
            "sha1": {"X-Hub-Signature-256": "sha1=" + good.removeprefix("sha256=")[:40]},
            "truncated": {"X-Hub-Signature-256": good[:-2]},
        }
        before = row_counts()
        for name, headers in cases.items():
            with self.subTest(name):
                error_of(self, self.post_webhook(body, headers=headers), 403, "invalid_signature")
                self.assertEqual(row_counts(), before)

    def test_a_channel_without_app_secret_refuses_everything(self) -> None:
        self.make_whatsapp_channel("wa-nosecret", secrets={"access_token": "x", "verify_token": "y"})
        error_of(self, self.post_webhook(fixture("whatsapp", "text.json"), path="/webhooks/wa-nosecret/"), 403)

    def test_a_repeated_wamid_stores_nothing_new_and_answers_200(self) -> None:
        first = self.post_webhook(fixture("whatsapp", "text.json")).json()
        counts = row_counts()

        again = self.post_webhook(fixture("whatsapp", "text.json"))

        self.assertEqual(again.status_code, 200)
        self.assertEqual((again.json()["event_id"], again.json()["duplicate"]), (first["event_id"], True))
        self.assertEqual(row_counts(), counts)


class InboundMessageTests(WhatsAppTestCase):
    def test_text_becomes_one_event_from_the_e164_sender_with_their_profile_name(self) -> None:
        payload = fixture("whatsapp", "text.json")

        body = self.post_webhook(payload).json()

        event = RoomEvent.objects.get(pk=body["event_id"])
        self.assertEqual(event.content, {"type": "text", "body": "Does it come in another color?"})
        self.assertEqual(event.provider_message_id, "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=")
        self.assertEqual(event.source_participant.address, "+16505551234")
        self.assertEqual(event.source_participant.display_name, "Sheena Nelson")
        self.assertEqual(event.metadata["raw"], payload)
        self.assertEqual(ChannelBinding.objects.get(room_id=body["room_id"], channel_id="wa").address, "+16505551234")

    def test_location(self) -> None:
        event = RoomEvent.objects.get(pk=self.post_webhook(fixture("whatsapp", "location.json")).json()["event_id"])

        self.assertEqual(
            event.content,
            {
                "type": "location",
                "latitude": 37.483307,
                "longitude": -122.148981,
                "label": "Meta Headquarters",
                "address": "1 Hacker Way, Menlo Park, CA 94025",
            },
        )

    def test_contacts_are_text_naming_them_with_the_cards_in_metadata(self) -> None:
        payload = fixture("whatsapp", "contacts.json")
        event = RoomEvent.objects.get(pk=self.post_webhook(payload).json()["event_id"])

        self.assertEqual(
            event.content, {"type": "text", "body": "[Contact: Barbara J. Johnson (+1 (940) 555-1234, bjohnson@example.com)]"}
        )
        self.assertEqual(event.metadata["contacts"], _message(payload)["contacts"])

    def test_button_and_list_replies_are_their_title_with_the_id_in_metadata(self) -> None:
        button = RoomEvent.objects.get(pk=self.post_webhook(fixture("whatsapp", "button_reply.json")).json()["event_id"])
        listed = RoomEvent.objects.get(pk=self.post_webhook(fixture("whatsapp", "list_reply.json")).json()["event_id"])

        self.assertEqual(button.content, {"type": "text", "body": "Cancel"})
        self.assertEqual(button.metadata["reply"], {"kind": "button_reply", "id": "cancel-appointment", "title": "Cancel"})
        self.assertEqual(button.metadata["in_reply_to"], "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI1QjJGRjI4QUIwRjc1OTgxNzkA")
        self.assertEqual(listed.content, {"type": "text", "body": "Priority Mail Express"})
        self.assertEqual(listed.metadata["reply"]["id"], "priority_express")
        self.assertEqual(listed.metadata["reply"]["description"], "Next Day to 2 Days")

    def test_a_reaction_is_a_reaction_event_pointing_at_the_message_reacted_to(self) -> None:
        room_id = self.customer_writes("hi")
        delivery = self.say(room_id, "Here is your receipt")
        payload = fixture("whatsapp", "reaction.json")
        _message(payload)["reaction"]["message_id"] = delivery.provider_message_id

        event = RoomEvent.objects.get(pk=self.post_webhook(payload).json()["event_id"])

        self.assertEqual(event.type, EventType.REACTION)
        self.assertEqual(event.room_id, room_id)
        self.assertEqual(event.content, {"type": "text", "body": "\U0001f44d"})
        self.assertEqual(event.metadata["reaction"]["target_event_id"], delivery.event_id)

    def test_an_unsupported_type_is_acknowledged_and_stores_nothing(self) -> None:
        payload = fixture("whatsapp", "text.json")
        _message(payload).update(type="unsupported", errors=[{"code": 131051, "title": "Message type unknown"}])
        before = row_counts()

        r = self.post_webhook(payload)

        self.assertEqual(r.status_code, 200)
        self.assertEqual(row_counts(), before)

    def test_a_change_for_another_phone_number_of_the_app_is_not_this_channels(self) -> None:
        payload = fixture("whatsapp", "text.json")
        payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "999999999"
        before = row_counts()

        self.assertEqual(self.post_webhook(payload).status_code, 200)
        self.assertEqual(row_counts(), before)

    def test_bodies_that_are_no_whatsapp_webhook_are_400_and_store_nothing(self) -> None:
        def broken(change) -> dict:
            payload = fixture("whatsapp", "text.json")
            change(payload)
            return payload

        cases = {
            "not JSON": b"hello",
            "a list": b"[]",
            "another object": broken(lambda p: p.update(object="page")),
            "entry not a list": broken(lambda p: p.update(entry={})),
            "no wamid": broken(lambda p: _message(p).pop("id")),
            "no sender": broken(lambda p: _message(p).pop("from")),
            "text without body": broken(lambda p: _message(p).update(text={})),
            "location without numbers": broken(lambda p: _message(p).update(type="location", location={"latitude": "x"})),
            "messages not a list": broken(lambda p: p["entry"][0]["changes"][0]["value"].update(messages={})),
            "an unknown interactive": broken(lambda p: _message(p).update(type="interactive", interactive={"type": "nfm_x"})),
        }
        before = row_counts()
        for name, payload in cases.items():
            with self.subTest(name):
                r = self.post_webhook(payload)
                self.assertIn(r.status_code, (400, 415), r.content)
                error_of(self, r, r.status_code)
                self.assertEqual(row_counts(), before)


class InboundMediaTests(WhatsAppTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.media_root = use_temporary_media_root(self, public_base_url="https://rk.example")

    def test_an_image_is_fetched_through_the_graph_media_endpoint_with_the_token_and_stored(self) -> None:
        self.graph.media["1003383421387256"] = (PNG, "image/jpeg")

        event = RoomEvent.objects.get(pk=self.post_webhook(fixture("whatsapp", "image.json")).json()["event_id"])

        content = event.content
        self.assertEqual((content["type"], content["mime_type"], content["size"]), ("media", "image/png", len(PNG)))
        self.assertEqual(content["caption"], "This is the one I want")
        self.assertTrue(content["url"].startswith("https://rk.example/"), content["url"])
        lookups = self.graph.requests_to("/v21.0/1003383421387256")
        downloads = self.graph.requests_to("/cdn/1003383421387256")
        self.assertEqual(len(lookups), 1)
        self.assertEqual(len(downloads), 1)
        self.assertEqual(downloads[0].headers["authorization"], f"Bearer {self.graph.access_token}")
        stored = [p for p in self.media_root.rglob("*") if p.is_file()]
        self.assertEqual([p.read_bytes() for p in stored], [PNG])
        self.assertTrue(default_storage.exists(str(stored[0].relative_to(self.media_root))))

    def test_a_voice_note_is_audio_content(self) -> None:
        self.graph.media["777"] = (OGG, "audio/ogg; codecs=opus")
        payload = fixture("whatsapp", "image.json")
        _message(payload).update(type="audio", audio={"mime_type": "audio/ogg; codecs=opus", "id": "777", "voice": True})
        _message(payload).pop("image")

        event = RoomEvent.objects.get(pk=self.post_webhook(payload).json()["event_id"])

        self.assertEqual(event.content["type"], "audio")
        self.assertEqual(event.content["mime_type"], "audio/ogg")

    def test_a_media_that_cannot_be_fetched_keeps_the_message_and_says_so(self) -> None:
        # The fake knows no such media id: Graph answers 404.
        event = RoomEvent.objects.get(pk=self.post_webhook(fixture("whatsapp", "image.json")).json()["event_id"])

        self.assertEqual(
            event.content,
            {
                "type": "composite",
                "parts": [
                    {"type": "text", "body": "This is the one I want"},
                    {"type": "text", "body": "[image could not be retrieved]"},
                ],
            },
        )
        self.assertEqual(event.metadata["media_errors"][0]["error"], "http_404")

    def test_a_repeat_of_a_media_message_fetches_nothing(self) -> None:
        self.graph.media["1003383421387256"] = (PNG, "image/jpeg")
        first = self.post_webhook(fixture("whatsapp", "image.json")).json()

        again = self.post_webhook(fixture("whatsapp", "image.json")).json()

        self.assertEqual((again["event_id"], again["duplicate"]), (first["event_id"], True))
        self.assertEqual(len(self.graph.requests_to("/cdn/1003383421387256")), 1)
