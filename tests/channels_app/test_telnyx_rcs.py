"""RCS through Telnyx, with SMS fallback, against the fake Telnyx API.

Before an RCS send the adapter asks Telnyx what the recipient's device
supports (``GET /v2/messaging/rcs/capabilities/{agent_id}/{number}``, cached).
An RCS device gets ``POST /v2/messages/rcs`` with an ``agent_message`` (rich
cards, suggestions, files: the fake refuses what Google's RBM schema refuses)
and, while ``fallback`` is on, Telnyx's own ``sms_fallback``; a device without
RCS gets an SMS from the same channel (``sent_as`` "sms") or, with fallback
off, a failure for that recipient.
"""

from __future__ import annotations

import base64

from channels_app.providers import delivery_idempotency_key
from tests.channels_app.test_telnyx_support import AGENT, FROM, PROFILE, RECIPIENT, TelnyxTestCase

CAPS_PATH = f"/v2/messaging/rcs/capabilities/{AGENT}/{RECIPIENT}"
ALL_FEATURES = ["ACTION_DIAL", "ACTION_OPEN_URL", "RICHCARD_CAROUSEL", "RICHCARD_STANDALONE"]
CARD = {
    "title": "Blue sneakers",
    "description": "Size 42, in stock",
    "image_url": "https://cdn.example.test/blue.jpg",
    "buttons": [{"title": "Buy", "url": "https://shop.example.test/blue"}],
}
RICH = {
    "type": "rich",
    "body": "Here is your pick",
    "cards": [CARD],
    "buttons": [{"title": "Call us", "phone": "+18005550100"}],
    "quick_replies": ["Other colours", "No thanks"],
}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class RCSTestCase(TelnyxTestCase):
    def rcs_room(self, **config) -> None:
        self.make_telnyx_channel("tx-rcs", channel_type="rcs", **config)
        self.open_room("tx-rcs")

    def say_rcs(self, content):
        return self.say(content, channel_id="tx-rcs")

    def rcs_requests(self):
        return self.telnyx.requests_to("/v2/messages/rcs")


class RCSDeviceTests(RCSTestCase):
    def test_a_rich_card_with_suggestions_goes_as_rcs_with_telnyx_sms_fallback(self) -> None:
        self.telnyx.rcs_features[RECIPIENT] = ALL_FEATURES
        self.rcs_room()

        delivery = self.say_rcs(RICH)

        caps, send = self.telnyx.requests
        self.assertEqual((caps.method, caps.path), ("GET", CAPS_PATH))
        self.assertEqual(caps.headers["authorization"], f"Bearer {self.telnyx.api_key}")
        self.assertEqual((send.method, send.path), ("POST", "/v2/messages/rcs"))
        self.assertEqual(send.headers["authorization"], f"Bearer {self.telnyx.api_key}")
        self.assertEqual(send.headers["idempotency-key"], delivery_idempotency_key(delivery))
        body = send.json()
        self.assertEqual(
            {k: body[k] for k in ("agent_id", "messaging_profile_id", "to", "type")},
            {"agent_id": AGENT, "messaging_profile_id": PROFILE, "to": RECIPIENT, "type": "RCS"},
        )
        self.assertTrue(body["webhook_url"].endswith("/webhooks/tx-rcs/status/"))
        self.assertEqual(
            body["agent_message"],
            {
                "content_message": {
                    "rich_card": {
                        "standalone_card": {
                            "card_orientation": "VERTICAL",
                            "thumbnail_image_alignment": "THUMBNAIL_IMAGE_ALIGNMENT_UNSPECIFIED",
                            "card_content": {
                                "title": "Blue sneakers",
                                "description": "Here is your pick\n\nSize 42, in stock",
                                "media": {"height": "MEDIUM", "content_info": {"file_url": "https://cdn.example.test/blue.jpg"}},
                                "suggestions": [
                                    {
                                        "action": {
                                            "text": "Buy",
                                            "postback_data": b64("Buy"),
                                            "open_url_action": {
                                                "url": "https://shop.example.test/blue",
                                                "application": "BROWSER",
                                                "webview_view_mode": "WEBVIEW_VIEW_MODE_UNSPECIFIED",
                                            },
                                        }
                                    }
                                ],
                            },
                        }
                    },
                    "suggestions": [
                        {
                            "action": {
                                "text": "Call us",
                                "postback_data": b64("Call us"),
                                "dial_action": {"phone_number": "+18005550100"},
                            }
                        },
                        {"reply": {"text": "Other colours", "postback_data": b64("Other colours")}},
                        {"reply": {"text": "No thanks", "postback_data": b64("No thanks")}},
                    ],
                }
            },
        )
        fallback = body["sms_fallback"]
        self.assertEqual(fallback["from"], FROM)
        for part in ("Here is your pick", "Blue sneakers", "Size 42", "Call us", "Other colours"):
            self.assertIn(part, fallback["text"])
        self.assertEqual((delivery.status, delivery.sent_as), ("queued", "rcs"))
        self.assertEqual(self.telnyx.messages[delivery.provider_message_id]["type"], "RCS")

    def test_several_cards_are_a_carousel(self) -> None:
        self.telnyx.rcs_features[RECIPIENT] = ALL_FEATURES
        self.rcs_room()
        cards = [{**CARD, "title": f"Pair {i}"} for i in range(12)]

        delivery = self.say_rcs({"type": "rich", "body": "Pick one", "cards": cards})

        carousel = self.rcs_requests()[0].json()["agent_message"]["content_message"]["rich_card"]["carousel_card"]
        self.assertEqual(carousel["card_width"], "MEDIUM")
        self.assertEqual(
            [c["title"] for c in carousel["card_contents"]], [f"Pair {i}" for i in range(10)], "RBM takes 10 at most"
        )
        self.assertEqual(delivery.status, "queued")

    def test_a_device_without_rich_cards_gets_text_and_suggestions(self) -> None:
        self.telnyx.rcs_features[RECIPIENT] = ["GENERIC_RCS_FEATURE"]
        self.rcs_room()

        delivery = self.say_rcs(RICH)

        message = self.rcs_requests()[0].json()["agent_message"]["content_message"]
        self.assertNotIn("rich_card", message)
        self.assertIn("Here is your pick", message["text"])
        self.assertIn("Blue sneakers", message["text"])
        self.assertEqual(len(message["suggestions"]), 3)
        self.assertEqual((delivery.status, delivery.sent_as), ("queued", "rcs"))

    def test_text_and_files(self) -> None:
        self.telnyx.rcs_features[RECIPIENT] = ALL_FEATURES
        self.rcs_room()

        self.say_rcs("plain words")
        self.say_rcs({"type": "media", "url": "https://cdn.example.test/a.pdf", "mime_type": "application/pdf"})
        self.say_rcs(
            {"type": "media", "url": "https://cdn.example.test/b.jpg", "mime_type": "image/jpeg", "caption": "your receipt"}
        )

        text, file, captioned = (r.json() for r in self.rcs_requests())
        self.assertEqual(text["agent_message"], {"content_message": {"text": "plain words"}})
        self.assertEqual(text["sms_fallback"], {"from": FROM, "text": "plain words"})
        self.assertEqual(
            file["agent_message"], {"content_message": {"content_info": {"file_url": "https://cdn.example.test/a.pdf"}}}
        )
        self.assertEqual(file["mms_fallback"], {"from": FROM, "media_urls": ["https://cdn.example.test/a.pdf"]})
        card = captioned["agent_message"]["content_message"]["rich_card"]["standalone_card"]["card_content"]
        self.assertEqual(
            card,
            {
                "description": "your receipt",
                "media": {"height": "MEDIUM", "content_info": {"file_url": "https://cdn.example.test/b.jpg"}},
            },
        )

    def test_the_capability_answer_is_cached(self) -> None:
        self.telnyx.rcs_features[RECIPIENT] = ALL_FEATURES
        self.rcs_room()

        self.say_rcs("one")
        self.say_rcs("two")

        self.assertEqual(len(self.telnyx.requests_to(CAPS_PATH)), 1)
        self.assertEqual(len(self.rcs_requests()), 2)

    def test_when_the_check_fails_it_goes_as_rcs_and_telnyx_falls_back(self) -> None:
        self.telnyx.capabilities_status = 500
        self.rcs_room()

        delivery = self.say_rcs("are you there?")

        [send] = self.rcs_requests()
        self.assertEqual(send.json()["sms_fallback"], {"from": FROM, "text": "are you there?"})
        self.assertEqual((delivery.status, delivery.sent_as), ("queued", "rcs"))

    def test_telnyx_reporting_its_sms_fallback_records_sms(self) -> None:
        self.telnyx.rcs_features[RECIPIENT] = ALL_FEATURES
        self.rcs_room()
        delivery = self.say_rcs("hello")
        event = self.status_event("rcs_message_finalized.json", delivery.provider_message_id)
        # Delivered, but Telnyx reports the message went as SMS (its fallback): recorded as such.
        event["data"]["payload"]["type"] = "SMS"

        r = self.post_webhook("/webhooks/tx-rcs/status/", event)

        self.assertEqual(r.json(), {"updated": 1})
        delivery.refresh_from_db()
        self.assertEqual((delivery.status, delivery.sent_as), ("delivered", "sms"))

    def test_the_documented_rcs_finalized_event_delivers(self) -> None:
        self.telnyx.rcs_features[RECIPIENT] = ALL_FEATURES
        self.rcs_room()
        delivery = self.say_rcs("hello")

        self.post_webhook(
            "/webhooks/tx-rcs/status/", self.status_event("rcs_message_finalized.json", delivery.provider_message_id)
        )

        delivery.refresh_from_db()
        self.assertEqual((delivery.status, delivery.sent_as), ("delivered", "rcs"))


class NoRCSDeviceTests(RCSTestCase):
    def test_a_device_without_rcs_gets_an_sms_from_the_same_channel(self) -> None:
        self.rcs_room()  # the fake answers null features: no RCS

        delivery = self.say_rcs(RICH)

        self.assertEqual(self.rcs_requests(), [])
        [sms] = self.telnyx.requests_to("/v2/messages")
        self.assertEqual(sms.headers["idempotency-key"], delivery_idempotency_key(delivery))
        body = sms.json()
        self.assertEqual((body["from"], body["messaging_profile_id"], body["to"]), (FROM, PROFILE, RECIPIENT))
        self.assertTrue(body["text"].startswith("Here is your pick"))
        self.assertIn("Blue sneakers", body["text"])
        self.assertTrue(body["webhook_url"].endswith("/webhooks/tx-rcs/status/"))
        self.assertEqual((delivery.status, delivery.sent_as), ("queued", "sms"))
        self.assertEqual(self.telnyx.messages[delivery.provider_message_id]["type"], "SMS")

    def test_an_empty_feature_list_also_means_no_rcs(self) -> None:
        self.telnyx.rcs_features[RECIPIENT] = []
        self.rcs_room()

        self.assertEqual(self.say_rcs("hi").sent_as, "sms")

    def test_with_fallback_off_it_fails_for_that_recipient(self) -> None:
        for n, flag in enumerate((False, "false")):
            with self.subTest(fallback=flag):
                self.telnyx.reset()
                self.make_telnyx_channel(f"tx-rcs-{n}", channel_type="rcs", fallback=flag)
                self.open_room(f"tx-rcs-{n}")

                delivery = self.say("hi", channel_id=f"tx-rcs-{n}")

                self.assertEqual((delivery.status, delivery.error_code), ("failed", "rcs_unavailable"))
                self.assertEqual([r.path for r in self.telnyx.requests if r.method == "POST"], [])

    def test_with_fallback_off_an_rcs_device_gets_no_sms_fallback_leg(self) -> None:
        self.telnyx.rcs_features[RECIPIENT] = ALL_FEATURES
        self.rcs_room(fallback=False)

        self.say_rcs("hi")

        body = self.rcs_requests()[0].json()
        self.assertNotIn("sms_fallback", body)
        self.assertNotIn("mms_fallback", body)

    def test_an_rcs_channel_needs_its_agent_and_profile(self) -> None:
        self.rcs_room(agent_id=None)

        delivery = self.say_rcs("hi")

        self.assertEqual((delivery.status, delivery.error_code), ("failed", "configuration"))
        self.assertEqual(self.telnyx.requests, [])
