"""VoiceMeUp inbound: ``POST /webhooks/<channel_id>/?token=…``, verified by the channel's secret token.

VoiceMeUp cannot sign its webhooks, so the URL it is given carries the
channel's ``webhook_token`` (``channels_app.webhook_tokens``). Payloads are the
best public description of VoiceMeUp's (``fixtures/voicemeup/SOURCES.md``: the
RoomKit library's provider, no VoiceMeUp page was found). Every request goes
through django.test.Client; a refused request must store nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

from django.conf import settings
from django.test import TestCase

from channels_app.providers import get_provider
from channels_app.webhook_tokens import webhook_token_ensure, webhook_url_with_token
from rooms.errors import InvalidInput, NotFound
from rooms.models import Channel, RoomEvent
from tests.channels_app.helpers import error_of, row_counts
from tests.support import make_channel

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "voicemeup"
URL = "/webhooks/vmu-sms/"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


class VoiceMeUpInboundTestCase(TestCase):
    def setUp(self) -> None:
        make_channel(
            "vmu-sms",
            channel_type="sms",
            provider="voicemeup",
            config={"username": "acme", "from": "+15145551234"},
            secrets={"auth_token": "api-secret"},
        )
        # Set when the channel is configured, as the admin and add_channel do.
        self.token = webhook_token_ensure(channel_id="vmu-sms")

    def post(self, payload, *, token: str | None = "__mine__", path: str = URL, form: bool = False, **extra):
        token = self.token if token == "__mine__" else token
        url = path + (f"?{urlencode({'token': token})}" if token is not None else "")
        with self.captureOnCommitCallbacks(execute=True):
            if form:
                return self.client.post(url, data=urlencode(payload), content_type="application/x-www-form-urlencoded", **extra)
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            return self.client.post(url, data=body, content_type=extra.pop("content_type", "application/json"), **extra)

    def assertRefused(self, response, before: dict[str, int], status: int = 403, code: str | None = "invalid_signature") -> None:
        error_of(self, response, status, code)
        self.assertEqual(row_counts(), before, "a refused request must store nothing")


class TokenTests(VoiceMeUpInboundTestCase):
    def test_the_spec_says_token_verified_and_no_status_callbacks(self) -> None:
        spec = get_provider("voicemeup").spec
        self.assertEqual((spec.webhook, spec.status_callbacks), ("token", False))
        self.assertIn("webhook_token", spec.required_secrets)

    def test_a_token_is_made_once_and_kept(self) -> None:
        self.assertGreaterEqual(len(self.token), 43)  # 32 random bytes, URL-safe base64
        self.assertEqual(webhook_token_ensure(channel_id="vmu-sms"), self.token)
        self.assertEqual(Channel.objects.get(pk="vmu-sms").get_secret("webhook_token"), self.token)

    def test_the_admin_url_carries_the_token_and_works(self) -> None:
        url = webhook_url_with_token(Channel.objects.get(pk="vmu-sms"))

        split = urlsplit(url)
        self.assertEqual(f"{split.scheme}://{split.netloc}", settings.PUBLIC_BASE_URL)
        self.assertEqual(split.path, URL)
        self.assertEqual(parse_qs(split.query), {"token": [self.token]})
        self.assertTrue(webhook_url_with_token(Channel.objects.get(pk="vmu-sms"), status=True).split("?")[0].endswith("/status/"))
        r = self.post(fixture("inbound_sms.json"), token=None, path=f"{split.path}?{split.query}")
        self.assertEqual(r.status_code, 200, r.content)

    def test_a_channel_without_a_token_has_no_url_and_refuses_every_post(self) -> None:
        make_channel("vmu-bare", channel_type="sms", provider="voicemeup", config={"username": "acme", "from": "+15145551234"})
        with self.assertRaises(InvalidInput):
            webhook_url_with_token(Channel.objects.get(pk="vmu-bare"))
        before = row_counts()

        for token in ("", "anything"):
            with self.subTest(token=token):
                self.assertRefused(self.post(fixture("inbound_sms.json"), token=token, path="/webhooks/vmu-bare/"), before)

    def test_rotating_the_token_refuses_the_old_one(self) -> None:
        new = webhook_token_ensure(channel_id="vmu-sms", rotate=True)
        before = row_counts()

        self.assertNotEqual(new, self.token)
        self.assertRefused(self.post(fixture("inbound_sms.json")), before)
        self.assertEqual(self.post(fixture("inbound_sms.json"), token=new).status_code, 200)

    def test_ensure_on_an_unknown_channel_is_not_found(self) -> None:
        with self.assertRaises(NotFound):
            webhook_token_ensure(channel_id="nope")

    def test_missing_wrong_and_misplaced_tokens_are_403_and_store_nothing(self) -> None:
        make_channel(
            "vmu-other",
            channel_type="sms",
            provider="voicemeup",
            config={"username": "acme", "from": "+15145550000"},
            secrets={"auth_token": "x"},
        )
        other = webhook_token_ensure(channel_id="vmu-other")
        cases = {
            "missing": {"token": None},
            "empty": {"token": ""},
            "wrong": {"token": self.token[:-1] + ("A" if self.token[-1] != "A" else "B")},
            "another channel's": {"token": other},
            "non-ASCII": {"token": "é" * 43},
            "in a header, not the URL": {"token": None, "HTTP_X_TOKEN": self.token},
        }
        for label, kwargs in cases.items():
            with self.subTest(label):
                before = row_counts()
                self.assertRefused(self.post(fixture("inbound_sms.json"), **kwargs), before)

    def test_the_status_url_checks_the_token_and_then_says_there_are_no_reports(self) -> None:
        error_of(self, self.post({"sms_hash": "x"}, path=URL + "status/", token="wrong"), 403, "invalid_signature")
        error_of(self, self.post({"sms_hash": "x"}, path=URL + "status/"), 400, "unsupported")


class AcceptedTests(VoiceMeUpInboundTestCase):
    def test_a_json_sms_is_stored_with_its_hash_and_raw_payload(self) -> None:
        payload = fixture("inbound_sms.json")

        r = self.post(payload)

        self.assertEqual(r.status_code, 200, r.content)
        event = RoomEvent.objects.get(pk=r.json()["event_id"])
        self.assertEqual(event.content, {"type": "text", "body": "Hello from the outside!"})
        self.assertEqual(event.provider_message_id, "example-hash-001")
        self.assertEqual(event.source_participant.address, "+15145559999")
        self.assertEqual(event.metadata["raw"], payload)

    def test_a_form_encoded_sms_is_accepted_too(self) -> None:
        r = self.post(fixture("inbound_sms.json"), form=True)

        self.assertEqual(r.status_code, 200, r.content)
        self.assertEqual(RoomEvent.objects.get(pk=r.json()["event_id"]).content["body"], "Hello from the outside!")

    def test_ten_digit_senders_read_as_north_american_e164(self) -> None:
        for raw in ("5145559999", "15145559999"):
            with self.subTest(raw):
                body = self.post({**fixture("inbound_sms.json"), "source_number": raw, "sms_hash": raw}).json()
                self.assertEqual(RoomEvent.objects.get(pk=body["event_id"]).source_participant.address, "+15145559999")

    def test_a_repeated_hash_is_one_event(self) -> None:
        first = self.post(fixture("inbound_sms.json")).json()
        before = row_counts()

        again = self.post(fixture("inbound_sms.json"))

        self.assertEqual(again.status_code, 200)
        self.assertEqual((again.json()["duplicate"], again.json()["event_id"]), (True, first["event_id"]))
        self.assertEqual(row_counts(), before)

    def test_without_a_hash_the_same_post_twice_is_still_one_event(self) -> None:
        payload = {k: v for k, v in fixture("inbound_sms.json").items() if k != "sms_hash"}
        first = self.post(payload).json()

        again = self.post(payload).json()

        self.assertTrue(again["duplicate"])
        self.assertEqual(RoomEvent.objects.filter(pk=first["event_id"]).count(), 1)
        self.assertTrue(RoomEvent.objects.get(pk=first["event_id"]).provider_message_id.startswith("derived-"))

    def test_an_mms_in_two_posts_stores_its_text_then_its_media(self) -> None:
        text = self.post(fixture("inbound_mms_part1_wrapper.json")).json()
        media = self.post(fixture("inbound_mms_part2_media.json")).json()

        self.assertEqual(RoomEvent.objects.get(pk=text["event_id"]).content, {"type": "text", "body": "See this"})
        self.assertEqual(
            RoomEvent.objects.get(pk=media["event_id"]).content,
            {"type": "media", "url": "https://clients.voicemeup.com/file/abc.mms.jpg", "mime_type": "image/jpeg"},
        )
        self.assertEqual(media["room_id"], text["room_id"])

    def test_an_mms_with_its_text_in_the_media_post_keeps_it_as_caption(self) -> None:
        payload = {**fixture("inbound_mms_part2_media.json"), "message": "our logo", "attachment_mime_type": ""}

        body = self.post(payload).json()

        self.assertEqual(
            RoomEvent.objects.get(pk=body["event_id"]).content,
            {
                "type": "media",
                "url": "https://clients.voicemeup.com/file/abc.mms.jpg",
                "mime_type": "image/jpeg",
                "caption": "our logo",
            },
        )

    def test_a_wrapper_without_text_stores_nothing_and_answers_2xx(self) -> None:
        before = row_counts()

        r = self.post({**fixture("inbound_mms_part1_wrapper.json"), "message": ""})

        self.assertEqual((r.status_code, r.json()), (200, {"ignored": "mms_metadata"}))
        self.assertEqual(row_counts(), before)

    def test_an_outbound_echo_stores_nothing(self) -> None:
        before = row_counts()

        r = self.post({**fixture("inbound_sms.json"), "direction": "outbound"})

        self.assertEqual((r.status_code, r.json()), (200, {"ignored": "outbound"}))
        self.assertEqual(row_counts(), before)


class BadPayloadTests(VoiceMeUpInboundTestCase):
    def test_bad_payloads_are_4xx_and_store_nothing(self) -> None:
        sms = fixture("inbound_sms.json")
        cases = {
            "no sender": ({k: v for k, v in sms.items() if k != "source_number"}, 400),
            "nothing said": ({**sms, "message": "  "}, 400),
            "message not text": ({**sms, "message": ["a"]}, 400),
            "attachment not a URL": ({**sms, "attachment": {"u": 1}}, 400),
            "not json": (b"{oops", 400),
            "json array": (b"[]", 400),
        }
        for label, (payload, status) in cases.items():
            with self.subTest(label):
                before = row_counts()
                self.assertRefused(self.post(payload), before, status=status, code=None)
        before = row_counts()
        self.assertRefused(self.post(b"hello", content_type="text/plain"), before, status=415, code=None)
