"""RCS through Twilio: a Messaging Service with an RCS sender, SMS fallback, rich content as Content Templates.

What Twilio documents (https://www.twilio.com/docs/rcs/send-an-rcs-message),
and the fake Twilio reproduces: sent through a Messaging Service whose pool
holds an RCS sender, a message to a plain number goes over RCS when the
device can take it and falls back to SMS from the pool otherwise; ``To:
rcs:+1…`` turns the fallback off. Which way it went shows in the message's
``From`` (``rcs:<sender id>`` over RCS) in the status callbacks. Rich content
(cards, suggested replies and actions) is created once as a Content Template
(``POST /v1/Content``) and sent by its ``ContentSid``.
"""

from __future__ import annotations

from django.core.cache import cache

from rooms.inbound import InboundMessage, process_inbound
from tests.channels_app.fakes.twilio import fixture, post_as_twilio, twilio_error
from tests.channels_app.helpers import run_until_settled
from tests.channels_app.test_twilio_inbound import ACCOUNT, SERVICE, TOKEN
from tests.channels_app.test_twilio_outbound import CUSTOMER, TwilioOutboundTestCase

RCS_SENDER = "rcs:brand_xyz123_agent"
STATUS_URL = "/webhooks/tw-rcs/status/"


class RCSTestCase(TwilioOutboundTestCase):
    channel_id = "tw-rcs"
    channel_type = "rcs"

    def setUp(self) -> None:
        super().setUp()
        cache.clear()

    def open_rcs(self, **config) -> str:
        return self.open_room(**{"from": RCS_SENDER, **config})

    def post_rich(self, content: dict, *, message_id: str) -> str:
        """Rich content into the room, as an agent or an operator would write it; returns the event id."""
        with self.captureOnCommitCallbacks(execute=True):
            result = process_inbound(
                InboundMessage(channel_id="hook-in", sender="agent", content=content, provider_message_id=message_id)
            )
        return result.event.id

    def callbacks(self, sid: str) -> None:
        for form in self.twilio.status_callbacks(sid):
            with self.captureOnCommitCallbacks(execute=True):
                response = post_as_twilio(self.client, STATUS_URL, form, auth_token=TOKEN)
            self.assertEqual(response.status_code, 200, response.content[:300])


class FallbackTests(RCSTestCase):
    def test_with_fallback_it_goes_through_the_service_and_the_callbacks_say_rcs(self) -> None:
        self.open_rcs()
        self.twilio.rcs_capable.add(CUSTOMER)

        delivery = self.delivery(self.say("Your parcel is on its way")["event_id"])

        (req,) = self.twilio.message_requests()
        self.assertEqual(req.form["To"], [CUSTOMER], "a plain number: Twilio may fall back")
        self.assertEqual(req.form["MessagingServiceSid"], [SERVICE])
        self.assertNotIn("From", req.form)
        self.assertEqual((delivery.status, delivery.sent_as), ("queued", ""), "not known until Twilio says")

        self.callbacks(delivery.provider_message_id)

        delivery.refresh_from_db()
        self.assertEqual((delivery.status, delivery.sent_as), ("delivered", "rcs"))

    def test_a_device_without_rcs_gets_sms_and_the_callbacks_record_the_fallback(self) -> None:
        self.open_rcs()

        delivery = self.delivery(self.say("Your parcel is on its way")["event_id"])
        self.callbacks(delivery.provider_message_id)

        delivery.refresh_from_db()
        self.assertEqual((delivery.status, delivery.sent_as), ("delivered", "sms"))

    def test_the_documented_rcs_callback_says_rcs(self) -> None:
        self.open_rcs()
        delivery = self.delivery(self.say("hello")["event_id"])
        form = fixture("status_rcs_delivered.json")
        form["MessageSid"] = form["SmsSid"] = delivery.provider_message_id

        with self.captureOnCommitCallbacks(execute=True):
            post_as_twilio(self.client, STATUS_URL, form, auth_token=TOKEN)

        delivery.refresh_from_db()
        self.assertEqual((delivery.status, delivery.sent_as), ("delivered", "rcs"))

    def test_without_fallback_the_recipient_is_an_rcs_address(self) -> None:
        self.open_rcs(fallback=False)

        delivery = self.delivery(self.say("RCS only")["event_id"])

        (req,) = self.twilio.message_requests()
        self.assertEqual(req.form["To"], ["rcs:" + CUSTOMER])
        self.assertEqual((delivery.status, delivery.sent_as), ("queued", "rcs"))

    def test_fallback_false_as_a_string_is_false(self) -> None:
        self.open_rcs(fallback="false")
        self.say("RCS only")
        (req,) = self.twilio.message_requests()
        self.assertEqual(req.form["To"], ["rcs:" + CUSTOMER])

    def test_a_fallback_sender_is_passed_as_fallback_from(self) -> None:
        self.open_rcs(fallback_from="+15017250699")

        delivery = self.delivery(self.say("hello")["event_id"])
        self.callbacks(delivery.provider_message_id)

        (req,) = self.twilio.message_requests()
        self.assertEqual(req.form["FallbackFrom"], ["+15017250699"])
        delivery.refresh_from_db()
        self.assertEqual(delivery.sent_as, "sms")
        self.assertEqual(self.twilio.status_callbacks(delivery.provider_message_id)[-1]["From"], "+15017250699")

    def test_an_rcs_sender_without_a_service_sends_rcs_only(self) -> None:
        # FallbackFrom and Twilio's fallback need a Messaging Service; without one it is RCS or nothing.
        self.open_rcs(messaging_service_sid=None)

        delivery = self.delivery(self.say("hello")["event_id"])

        (req,) = self.twilio.message_requests()
        self.assertEqual((req.form["From"], req.form["To"]), ([RCS_SENDER], ["rcs:" + CUSTOMER]))
        self.assertNotIn("FallbackFrom", req.form)
        self.assertEqual(delivery.sent_as, "rcs")

    def test_media_goes_as_media_url_with_its_text(self) -> None:
        self.open_rcs()

        self.say("boarding pass", media=[{"url": "https://cdn.example.test/pass.png", "mime_type": "image/png"}])

        (req,) = self.twilio.message_requests()
        self.assertEqual((req.form["MediaUrl"], req.form["Body"]), (["https://cdn.example.test/pass.png"], ["boarding pass"]))


class RichContentTests(RCSTestCase):
    MENU = {
        "type": "rich",
        "body": "How was your stay?",
        "buttons": [{"title": "Our website", "url": "https://hotel.example.test"}, {"title": "Call us", "phone": "+15017250604"}],
        "quick_replies": ["Great", "Could be better"],
    }

    def test_rich_content_becomes_a_content_template_sent_by_its_sid(self) -> None:
        self.open_rcs()

        delivery = self.delivery(self.post_rich(self.MENU, message_id="r-1"))

        (created,) = self.twilio.content_requests()
        self.assertEqual(created.basic_auth(), (ACCOUNT, TOKEN))
        self.assertTrue(created.headers["Content-Type"].startswith("application/json"))
        definition = created.json()
        self.assertEqual(definition["language"], "en")
        self.assertEqual(
            definition["types"]["twilio/card"],
            {
                "body": "How was your stay?",
                "actions": [
                    {"type": "URL", "title": "Our website", "url": "https://hotel.example.test"},
                    {"type": "PHONE_NUMBER", "title": "Call us", "phone": "+15017250604"},
                    {"type": "QUICK_REPLY", "title": "Great", "id": "Great"},
                    {"type": "QUICK_REPLY", "title": "Could be better", "id": "Could be better"},
                ],
            },
        )
        self.assertEqual(
            definition["types"]["twilio/text"], {"body": "How was your stay?\nOur website | Call us | Great | Could be better"}
        )
        (sent,) = self.twilio.message_requests()
        (template_sid,) = self.twilio.templates
        self.assertEqual(sent.form["ContentSid"], [template_sid])
        self.assertNotIn("Body", sent.form)
        self.assertEqual(delivery.status, "queued")

    def test_the_same_content_reuses_its_template(self) -> None:
        self.open_rcs()

        self.post_rich(self.MENU, message_id="r-1")
        self.post_rich(self.MENU, message_id="r-2")
        self.post_rich({**self.MENU, "body": "And breakfast?"}, message_id="r-3")

        self.assertEqual(len(self.twilio.content_requests()), 2)
        sids = [r.form["ContentSid"][0] for r in self.twilio.message_requests()]
        self.assertEqual(sids[0], sids[1])
        self.assertNotEqual(sids[1], sids[2])

    def test_cards_become_a_card_or_a_carousel(self) -> None:
        self.open_rcs()
        card = {
            "title": "Deluxe room",
            "body": "Sea view",
            "image": "https://hotel.example.test/deluxe.jpg",
            "buttons": [{"title": "Book", "payload": "book_deluxe"}],
        }

        self.post_rich({"type": "rich", "body": "Our rooms", "cards": [card]}, message_id="c-1")
        self.post_rich({"type": "rich", "body": "Our rooms", "cards": [card, {**card, "title": "Suite"}]}, message_id="c-2")

        one, two = (r.json()["types"] for r in self.twilio.content_requests())
        self.assertEqual(
            one["twilio/card"],
            {
                "title": "Deluxe room",
                "body": "Our rooms\n\nSea view",
                "media": ["https://hotel.example.test/deluxe.jpg"],
                "actions": [{"type": "QUICK_REPLY", "title": "Book", "id": "book_deluxe"}],
            },
        )
        self.assertEqual(two["twilio/carousel"]["body"], "Our rooms")
        self.assertEqual([c["title"] for c in two["twilio/carousel"]["cards"]], ["Deluxe room", "Suite"])
        self.assertEqual(two["twilio/carousel"]["cards"][0]["media"], "https://hotel.example.test/deluxe.jpg")
        self.assertIn("twilio/text", two)

    def test_rich_text_without_options_is_a_plain_body(self) -> None:
        self.open_rcs()

        self.post_rich({"type": "rich", "format": "html", "body": "<p>Check-in from <b>3pm</b></p>"}, message_id="h-1")

        self.assertEqual(self.twilio.content_requests(), [])
        (req,) = self.twilio.message_requests()
        self.assertEqual(req.form["Body"], ["Check-in from 3pm"])

    def test_a_refused_template_fails_the_delivery_without_sending(self) -> None:
        self.open_rcs()
        self.twilio.content_script.append(twilio_error(400, 20001, "Invalid types"))

        delivery = self.delivery(self.post_rich(self.MENU, message_id="r-1"))

        self.assertEqual((delivery.status, delivery.error_code), ("failed", "20001"))
        self.assertEqual(self.twilio.message_requests(), [])

    def test_a_content_api_outage_is_retried(self) -> None:
        self.open_rcs()
        self.twilio.content_script.append(twilio_error(503, 20503, "Service Unavailable"))

        delivery = self.delivery(self.post_rich(self.MENU, message_id="r-1"))
        self.assertEqual(delivery.status, "pending")

        self.assertEqual(run_until_settled(delivery.pk).status, "queued")
        self.assertEqual(len(self.twilio.content_requests()), 2)

    def test_an_sms_channel_gets_rich_content_as_text(self) -> None:
        self.channel_id, self.channel_type = "tw-sms", "sms"
        self.open_room()

        self.post_rich(self.MENU, message_id="r-1")

        self.assertEqual(self.twilio.content_requests(), [])
        (req,) = self.twilio.message_requests()
        self.assertEqual(req.form["Body"], ["How was your stay?\nOur website | Call us | Great | Could be better"])
