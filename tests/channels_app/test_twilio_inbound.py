"""Twilio inbound messages: ``POST /webhooks/<channel_id>/`` with Twilio's form and ``X-Twilio-Signature``.

Requests go through django.test.Client (middleware, URL conf, the view) with
payloads from Twilio's documentation (fixtures/twilio), signed the way Twilio
documents it by ``fakes.twilio.twilio_signature`` (written from the
documentation, not with the SDK the adapter verifies with). A refused request
answers 403 and writes nothing; an accepted one answers 200 ``text/xml`` with
an empty TwiML ``<Response/>``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from django.test import TestCase, override_settings

from rooms.models import Channel, RoomEvent
from tests.channels_app.fakes.twilio import fixture, post_as_twilio, twilio_signature
from tests.channels_app.helpers import error_of, row_counts
from tests.support import make_channel

BASE = "https://roomkit.example.test"
ACCOUNT = "AC00000000000000000000000000000001"
TOKEN = "3f5d2c1b0a9e8d7c6b5a4f3e2d1c0b9a"
SERVICE = "MG9752274e9e519418a7406176694466fa"
NUMBER = "+15558675310"  # the channel's number: "To" in the fixtures
CUSTOMER = "+14017122661"  # "From" in the fixtures
URL = "/webhooks/tw-sms/"


def twilio_channel(channel_id: str = "tw-sms", *, channel_type: str = "sms", token: str = TOKEN, **config):
    settings = {"account_sid": ACCOUNT, "from": NUMBER, "messaging_service_sid": SERVICE, "api_base": "https://api.twilio.com"}
    settings.update(config)
    # Reconfiguring a channel a test set up: a new row, as an operator's save would leave it.
    Channel.objects.filter(pk=channel_id).delete()
    return make_channel(
        channel_id,
        channel_type=channel_type,
        provider="twilio",
        config={k: v for k, v in settings.items() if v is not None},
        secrets={"auth_token": token},
    )


@override_settings(PUBLIC_BASE_URL=BASE)
class TwilioInboundTestCase(TestCase):
    def setUp(self) -> None:
        self.channel = twilio_channel()

    def post(self, form: dict, *, path: str = URL, token: str | None = TOKEN, **kwargs):
        with self.captureOnCommitCallbacks(execute=True):
            return post_as_twilio(self.client, path, form, auth_token=token, **kwargs)

    def assertTwiml(self, response) -> None:
        self.assertEqual(response.status_code, 200, response.content[:300])
        self.assertTrue(response["Content-Type"].startswith("text/xml"), response["Content-Type"])
        root = ET.fromstring(response.content)
        self.assertEqual((root.tag, list(root), (root.text or "").strip()), ("Response", [], ""))

    def assertRefused(self, response, status: int, code: str, before: dict[str, int]) -> None:
        error_of(self, response, status, code)
        self.assertEqual(row_counts(), before, "a refused request must write nothing")

    def only_event(self) -> RoomEvent:
        events = list(RoomEvent.objects.select_related("source_participant"))
        self.assertEqual(len(events), 1, events)
        return events[0]


class SignatureTests(TwilioInboundTestCase):
    def test_a_signed_sms_is_stored_and_answered_with_empty_twiml(self) -> None:
        form = fixture("inbound_sms.json")

        response = self.post(form)

        self.assertTwiml(response)
        event = self.only_event()
        self.assertEqual(event.source_channel_id, "tw-sms")
        self.assertEqual(event.provider_message_id, "SM1342fe1b2c904d1ab04f0fc7a58abca9")
        self.assertEqual(event.content, {"type": "text", "body": "Ahoy! Let's build something amazing."})
        self.assertEqual(event.source_participant.address, CUSTOMER)
        self.assertEqual(event.metadata["raw"], form, "the form is kept as Twilio sent it")
        self.assertEqual(event.metadata["channel"], "sms")

    def test_a_message_with_nothing_to_keep_stores_nothing_and_is_still_answered_with_twiml(self) -> None:
        before = row_counts()

        response = self.post({**fixture("inbound_sms.json"), "Body": ""})

        self.assertTwiml(response)
        self.assertEqual(row_counts(), before)

    def test_a_national_sender_is_stored_in_e164(self) -> None:
        twilio_channel(default_region="US")
        form = {**fixture("inbound_sms.json"), "From": "(401) 712-2661"}

        self.assertTwiml(self.post(form))

        self.assertEqual(self.only_event().source_participant.address, CUSTOMER)

    def test_missing_signature_is_refused(self) -> None:
        before = row_counts()
        self.assertRefused(self.post(fixture("inbound_sms.json"), token=None), 403, "invalid_signature", before)

    def test_signature_with_another_token_is_refused(self) -> None:
        before = row_counts()
        response = self.post(fixture("inbound_sms.json"), token="0" * 32)
        self.assertRefused(response, 403, "invalid_signature", before)

    def test_garbage_signature_is_refused(self) -> None:
        before = row_counts()
        response = self.post(fixture("inbound_sms.json"), signature="not-base64-at-all")
        self.assertRefused(response, 403, "invalid_signature", before)

    def test_a_signature_for_another_url_is_refused(self) -> None:
        twilio_channel("tw-other")
        before = row_counts()
        for signed_url in (
            f"{BASE}/webhooks/tw-other/",
            f"https://elsewhere.example.test{URL}",
            f"http://roomkit.example.test{URL}",
        ):
            with self.subTest(signed_url=signed_url):
                response = self.post(fixture("inbound_sms.json"), signed_url=signed_url)
                self.assertRefused(response, 403, "invalid_signature", before)

    def test_a_field_changed_after_signing_is_refused(self) -> None:
        form = fixture("inbound_sms.json")
        signature = twilio_signature(BASE + URL, form, TOKEN)
        before = row_counts()

        response = self.post({**form, "Body": "Send the money to account 666"}, signature=signature)

        self.assertRefused(response, 403, "invalid_signature", before)

    def test_twilio_signing_with_the_default_port_is_accepted(self) -> None:
        # Twilio's signing sometimes includes :443; the validator tries both.
        response = self.post(fixture("inbound_sms.json"), signed_url=f"https://roomkit.example.test:443{URL}")
        self.assertTwiml(response)

    def test_the_query_string_is_part_of_the_signed_url(self) -> None:
        form = fixture("inbound_sms.json")
        before = row_counts()
        unsigned_query = self.post(form, path=URL + "?source=console", signed_url=BASE + URL)
        self.assertRefused(unsigned_query, 403, "invalid_signature", before)

        self.assertTwiml(self.post(form, path=URL + "?source=console"))

    def test_a_channel_without_its_auth_token_refuses_everything(self) -> None:
        make_channel("tw-bare", channel_type="sms", provider="twilio", config={"account_sid": ACCOUNT, "from": NUMBER})
        before = row_counts()
        response = self.post(fixture("inbound_sms.json"), path="/webhooks/tw-bare/", signed_url=f"{BASE}/webhooks/tw-bare/")
        self.assertRefused(response, 403, "invalid_signature", before)

    def test_get_is_not_a_webhook(self) -> None:
        error_of(self, self.client.get(URL), 405, "method_not_allowed")


class DuplicateTests(TwilioInboundTestCase):
    def test_a_repeated_message_sid_stores_nothing_new_and_still_answers_twiml(self) -> None:
        form = fixture("inbound_sms.json")
        self.assertTwiml(self.post(form))
        before = row_counts()

        again = self.post({**form, "Body": "the same message, retried"})

        self.assertTwiml(again)
        self.assertEqual(row_counts(), before)
        self.assertEqual(self.only_event().content["body"], "Ahoy! Let's build something amazing.")

    def test_messages_with_different_sids_are_two_events_in_one_room(self) -> None:
        first = fixture("inbound_sms.json")
        second = {**first, "MessageSid": "SM" + "b" * 32, "SmsSid": "SM" + "b" * 32, "SmsMessageSid": "SM" + "b" * 32}

        self.post(first)
        self.post(second)

        events = list(RoomEvent.objects.order_by("seq"))
        self.assertEqual([e.seq for e in events], [1, 2])
        self.assertEqual(len({e.room_id for e in events}), 1)


class AccountTests(TwilioInboundTestCase):
    def test_a_webhook_for_another_account_is_refused(self) -> None:
        # Signed with this channel's token (a misconfigured or replayed subaccount webhook): still not ours.
        before = row_counts()
        form = {**fixture("inbound_sms.json"), "AccountSid": "AC" + "9" * 32}
        self.assertRefused(self.post(form), 403, "wrong_account", before)

    def test_a_webhook_without_account_is_refused(self) -> None:
        form = fixture("inbound_sms.json")
        del form["AccountSid"]
        before = row_counts()
        self.assertRefused(self.post(form), 403, "wrong_account", before)


class MessagingServiceTests(TwilioInboundTestCase):
    """Which channel a message is for: by Messaging Service, falling back to the ``To`` number."""

    def assertStoredOn(self, response, channel_id: str) -> RoomEvent:
        self.assertTwiml(response)
        event = self.only_event()
        self.assertEqual(event.source_channel_id, channel_id)
        return event

    def test_another_number_of_the_channels_service_is_the_channel(self) -> None:
        form = {**fixture("inbound_sms.json"), "To": "+15005550006"}
        self.assertStoredOn(self.post(form), "tw-sms")

    def test_the_channels_number_without_a_service_is_the_channel(self) -> None:
        form = fixture("inbound_sms.json")
        del form["MessagingServiceSid"]
        self.assertStoredOn(self.post(form), "tw-sms")

    def test_the_channels_number_in_another_service_is_the_channel(self) -> None:
        # The peer's bug: looked up by MessagingServiceSid alone, this message was dropped.
        form = {**fixture("inbound_sms.json"), "MessagingServiceSid": "MG" + "1" * 32}
        self.assertStoredOn(self.post(form), "tw-sms")

    def test_a_number_spelled_otherwise_is_the_same_number(self) -> None:
        twilio_channel(messaging_service_sid=None, **{"from": "+1 (555) 867-5310"})
        form = {**fixture("inbound_sms.json"), "MessagingServiceSid": ""}
        self.assertStoredOn(self.post(form), "tw-sms")

    def test_a_channel_with_only_a_service_takes_its_pools_numbers(self) -> None:
        twilio_channel(**{"from": None})
        form = {**fixture("inbound_sms.json"), "To": "+15005550009"}
        self.assertStoredOn(self.post(form), "tw-sms")

    def test_the_service_url_hands_a_sibling_channels_service_to_that_channel(self) -> None:
        twilio_channel("tw-rcs", channel_type="rcs", messaging_service_sid="MG" + "2" * 32, **{"from": "rcs:brand_xyz123_agent"})
        form = {**fixture("inbound_sms.json"), "MessagingServiceSid": "MG" + "2" * 32, "To": "+15005550007"}
        self.assertStoredOn(self.post(form), "tw-rcs")

    def test_the_service_url_hands_a_sibling_channels_number_to_that_channel(self) -> None:
        twilio_channel("tw-support", messaging_service_sid=None, **{"from": "+15005550001"})
        form = {**fixture("inbound_sms.json"), "MessagingServiceSid": "MG" + "3" * 32, "To": "+15005550001"}
        self.assertStoredOn(self.post(form), "tw-support")

    def test_a_service_claims_before_a_number(self) -> None:
        twilio_channel("tw-by-number", messaging_service_sid=None, **{"from": "+15005550001"})
        twilio_channel("tw-by-service", messaging_service_sid="MG" + "4" * 32, **{"from": None})
        form = {**fixture("inbound_sms.json"), "MessagingServiceSid": "MG" + "4" * 32, "To": "+15005550001"}
        self.assertStoredOn(self.post(form), "tw-by-service")

    def test_channels_of_other_accounts_disabled_or_of_other_types_are_not_candidates(self) -> None:
        twilio_channel("tw-other-account", account_sid="AC" + "7" * 32, messaging_service_sid=None, **{"from": "+15005550001"})
        twilio_channel("tw-disabled", messaging_service_sid=None, **{"from": "+15005550001"})
        Channel.objects.filter(pk="tw-disabled").update(enabled=False)
        twilio_channel("tw-voice", channel_type="voice", messaging_service_sid=None, **{"from": "+15005550001"})
        form = {**fixture("inbound_sms.json"), "MessagingServiceSid": "MG" + "5" * 32, "To": "+15005550001"}

        with self.assertLogs("channels_app.providers.twilio.webhooks", "WARNING") as logs:
            self.assertStoredOn(self.post(form), "tw-sms")
        self.assertIn("+15005550001", logs.output[0])

    def test_a_message_no_channel_claims_is_kept_on_the_called_channel(self) -> None:
        form = {**fixture("inbound_sms.json"), "MessagingServiceSid": "MG" + "6" * 32, "To": "+15005550002"}
        with self.assertLogs("channels_app.providers.twilio.webhooks", "WARNING"):
            self.assertStoredOn(self.post(form), "tw-sms")


class ContentTests(TwilioInboundTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.rcs = twilio_channel("tw-rcs", channel_type="rcs", **{"from": "rcs:brand_xyz123_agent"})

    def test_an_rcs_button_reply_keeps_the_payload_and_strips_the_channel_prefix(self) -> None:
        form = fixture("inbound_rcs_button.json")

        self.assertTwiml(self.post(form, path="/webhooks/tw-rcs/"))

        event = self.only_event()
        self.assertEqual(event.source_channel_id, "tw-rcs")
        self.assertEqual(event.source_participant.address, CUSTOMER)
        self.assertEqual(event.content, {"type": "text", "body": "Cancel Appointment"})
        self.assertEqual(
            event.metadata["button"], {"payload": "postback_data_1234", "text": "Cancel Appointment", "type": "REPLY"}
        )
        self.assertEqual(event.metadata["channel"], "rcs")
        self.assertEqual(event.metadata["raw"]["From"], "rcs:+14017122661")

    def test_an_rcs_message_to_the_rcs_sender_without_service_is_that_channel(self) -> None:
        twilio_channel("tw-rcs", channel_type="rcs", messaging_service_sid=None, **{"from": "rcs:brand_xyz123_agent"})
        form = fixture("inbound_rcs_button.json")
        del form["MessagingServiceSid"]

        self.assertTwiml(self.post(form, path="/webhooks/tw-rcs/"))

        self.assertEqual(self.only_event().source_channel_id, "tw-rcs")

    def test_a_shared_location_is_location_content(self) -> None:
        self.assertTwiml(self.post(fixture("inbound_location.json"), path="/webhooks/tw-rcs/"))

        self.assertEqual(
            self.only_event().content,
            {
                "type": "location",
                "latitude": 51.51322977399644,
                "longitude": -0.2197976373036567,
                "label": "The Harrow Club",
                "address": "187 Freston Road, London, Greater London W10 6TH",
            },
        )

    def test_a_message_with_nothing_in_it_stores_nothing_and_still_answers_twiml(self) -> None:
        before = row_counts()
        self.assertTwiml(self.post({**fixture("inbound_sms.json"), "Body": ""}))
        self.assertEqual(row_counts(), before)

    def test_malformed_fields_are_a_400_that_stores_nothing(self) -> None:
        cases = {
            "NumMedia not a number": ({"NumMedia": "two"}, "invalid_field"),
            "NumMedia above Twilio's 10": ({"NumMedia": "11"}, "invalid_field"),
            "latitude not a number": ({"Latitude": "north", "Longitude": "1.0"}, "invalid_field"),
            "no MessageSid": ({"MessageSid": "", "SmsMessageSid": ""}, "missing_field"),
            "no From": ({"From": ""}, "missing_field"),
        }
        before = row_counts()
        for name, (change, code) in cases.items():
            with self.subTest(name):
                response = self.post({**fixture("inbound_sms.json"), **change})
                self.assertRefused(response, 400, code, before)
