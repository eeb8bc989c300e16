"""Inbound Telnyx webhooks (``message.received``) on ``POST /webhooks/<channel_id>/``.

Payloads are Telnyx's documented examples (fixtures/telnyx, SOURCES.md), signed
by the fake's test key. A message becomes one event, keyed by Telnyx's
message id, from the sender's E.164 number, with the whole webhook body kept as
the event's metadata ``raw``. MMS media are fetched and stored
(``test_telnyx_media``). A body that is no Telnyx event is a 400 that stores
nothing; an event we do not act on is acknowledged (Telnyx retries anything
but a 2xx).
"""

from __future__ import annotations

import base64
import json

from rooms.models import ChannelBinding, RoomEvent
from tests.channels_app.fakes.telnyx import fixture
from tests.channels_app.helpers import error_of, row_counts
from tests.channels_app.test_telnyx_support import TelnyxTestCase

URL = "/webhooks/tx-sms/"
RCS_URL = "/webhooks/tx-rcs/"


class InboundSMSTests(TelnyxTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.channel = self.make_telnyx_channel()

    def test_the_documented_sms_becomes_one_event(self) -> None:
        payload = fixture("inbound_sms.json")

        r = self.post_webhook(URL, payload)

        self.assertEqual(r.status_code, 200, r.content)
        self.assertTrue(r["Content-Type"].startswith("application/json"))
        body = r.json()
        self.assertEqual(body["duplicate"], False)
        self.assertEqual(body["status"], "stored")
        event = RoomEvent.objects.get(pk=body["event_id"])
        self.assertEqual(event.room_id, body["room_id"])
        self.assertEqual(event.source_channel_id, "tx-sms")
        self.assertEqual(event.provider_message_id, "7ee4241c-f127-47e5-9c34-3aac291f8058")
        self.assertEqual(event.content, {"type": "text", "body": "Hello, World!"})
        self.assertEqual(event.source_participant.address, "+18665550001")
        self.assertEqual(event.metadata["raw"], payload)
        self.assertEqual(ChannelBinding.objects.get(room_id=body["room_id"], channel_id="tx-sms").address, "+18665550001")

    def test_a_sender_written_without_plus_is_stored_as_e164(self) -> None:
        payload = fixture("inbound_sms.json")
        payload["data"]["payload"]["from"]["phone_number"] = "18665550001"

        r = self.post_webhook(URL, payload)

        self.assertEqual(RoomEvent.objects.get(pk=r.json()["event_id"]).source_participant.address, "+18665550001")

    def test_a_repeat_of_the_message_id_stores_nothing_new(self) -> None:
        first = self.post_webhook(URL, fixture("inbound_sms.json")).json()
        counts = row_counts()
        # Telnyx retries with a new attempt number and a new signature: still the same message.
        again_payload = fixture("inbound_sms.json")
        again_payload["meta"]["attempt"] = 2
        again = self.post_webhook(URL, again_payload)

        self.assertEqual(again.status_code, 200)
        self.assertEqual((again.json()["event_id"], again.json()["duplicate"]), (first["event_id"], True))
        self.assertEqual(row_counts(), counts)

    def test_payloads_that_are_no_telnyx_message_are_400_and_store_nothing(self) -> None:
        def without(*path: str) -> dict:
            payload = fixture("inbound_sms.json")
            target = payload
            for key in path[:-1]:
                target = target[key]
            del target[path[-1]]
            return payload

        def with_value(value, *path: str) -> dict:
            payload = fixture("inbound_sms.json")
            target = payload
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = value
            return payload

        cases = {
            "not JSON": b"data=1",
            "a JSON list": b"[1, 2]",
            "no data": without("data"),
            "no event_type": without("data", "event_type"),
            "no payload": without("data", "payload"),
            "no message id": without("data", "payload", "id"),
            "empty message id": with_value("  ", "data", "payload", "id"),
            "no sender": without("data", "payload", "from"),
            "a sender that is no number": with_value({"phone_number": 42}, "data", "payload", "from"),
            "no text and no media": with_value("", "data", "payload", "text"),
            "text not a string": with_value(["hi"], "data", "payload", "text"),
            "media not a list": with_value({"url": "x"}, "data", "payload", "media"),
            "media without url": with_value([{"content_type": "image/png"}], "data", "payload", "media"),
        }
        before = row_counts()
        for name, payload in cases.items():
            with self.subTest(name):
                r = self.post_webhook(URL, payload)
                self.assertIn(r.status_code, (400, 415), r.content)
                error_of(self, r, r.status_code)
                self.assertEqual(row_counts(), before)

    def test_an_event_type_we_do_not_act_on_is_acknowledged_and_stores_nothing(self) -> None:
        payload = fixture("inbound_sms.json")
        payload["data"]["event_type"] = "message.unknown_future_event"
        before = row_counts()

        r = self.post_webhook(URL, payload)

        self.assertEqual((r.status_code, r.json()), (200, {"ignored": "message.unknown_future_event"}))
        self.assertEqual(row_counts(), before)

    def test_a_message_sent_to_the_status_url_is_stored_not_lost(self) -> None:
        r = self.post_webhook("/webhooks/tx-sms/status/", fixture("inbound_sms.json"))

        self.assertEqual((r.status_code, r.json()), (200, {"updated": 0}))
        self.assertEqual(RoomEvent.objects.filter(provider_message_id="7ee4241c-f127-47e5-9c34-3aac291f8058").count(), 1)


class InboundRCSTests(TelnyxTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.make_telnyx_channel("tx-rcs", channel_type="rcs")

    def rcs(self, body: dict) -> dict:
        payload = fixture("rcs_inbound_text.json")
        payload["data"]["payload"]["body"] = body
        return payload

    def content_of(self, response) -> dict:
        self.assertEqual(response.status_code, 200, response.content)
        return RoomEvent.objects.get(pk=response.json()["event_id"]).content

    def test_an_rcs_text(self) -> None:
        r = self.post_webhook(RCS_URL, fixture("rcs_inbound_text.json"))

        self.assertEqual(self.content_of(r), {"type": "text", "body": "Do you have it in blue?"})
        event = RoomEvent.objects.get(pk=r.json()["event_id"])
        self.assertEqual(event.source_participant.address, "+13125551234")
        self.assertEqual(event.provider_message_id, "0b7e3f8e-2d4c-4b8a-9f1e-3c2d1b0a9e8f")

    def test_a_tapped_suggestion_is_its_label_with_our_postback_read_back(self) -> None:
        postback = base64.b64encode(b"order:42:blue").decode()
        r = self.post_webhook(
            RCS_URL, self.rcs({"suggestion_response": {"text": "Blue", "postback_data": postback, "type": "REPLY"}})
        )

        self.assertEqual(self.content_of(r), {"type": "text", "body": "Blue"})
        self.assertEqual(RoomEvent.objects.get(pk=r.json()["event_id"]).metadata["postback_data"], "order:42:blue")

    def test_a_shared_location(self) -> None:
        r = self.post_webhook(RCS_URL, self.rcs({"location": {"latitude": 41.8, "longitude": -87.6}}))

        self.assertEqual(self.content_of(r), {"type": "location", "latitude": 41.8, "longitude": -87.6})

    def test_a_sent_file_keeps_its_url(self) -> None:
        file = {
            "payload": {
                "mime_type": "image/png",
                "file_size_bytes": 1024,
                "file_uri": "https://rcs.example.test/f.png",
                "file_name": "f.png",
            }
        }

        r = self.post_webhook(RCS_URL, self.rcs({"user_file": file}))

        self.assertEqual(
            self.content_of(r),
            {
                "type": "media",
                "url": "https://rcs.example.test/f.png",
                "mime_type": "image/png",
                "filename": "f.png",
                "size": 1024,
            },
        )

    def test_an_rcs_body_with_nothing_we_know_is_400(self) -> None:
        before = row_counts()
        for body in (
            {},
            {"text": ""},
            {"location": {"latitude": "north"}},
            {"user_file": {"payload": {}}},
            {"suggestion_response": {}},
        ):
            with self.subTest(body=body):
                error_of(self, self.post_webhook(RCS_URL, self.rcs(body)), 400)
                self.assertEqual(row_counts(), before)

    def test_raw_is_the_body_as_received(self) -> None:
        payload = fixture("rcs_inbound_text.json")
        body = json.dumps(payload).encode()

        r = self.post_webhook(RCS_URL, body)

        self.assertEqual(RoomEvent.objects.get(pk=r.json()["event_id"]).metadata["raw"], json.loads(body))
