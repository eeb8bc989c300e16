"""The generic HTTP webhook channel, inbound: ``POST /webhooks/<channel_id>/``.

Every request goes through django.test.Client (the whole middleware stack and
URL conf) and is checked against the contract: the success shape, dedup by
``id``, HMAC signatures, and a JSON 4xx that writes nothing for each way a
caller can get it wrong. The default Client re-raises any exception a view
lets escape, so an accidental 500 fails the test that caused it.
"""

from __future__ import annotations

import json

from django.test import TestCase, override_settings

from channels_app.signing import SIGNATURE_HEADER, sign
from rooms.models import ChannelBinding, Participant, Room, RoomEvent
from rooms.services import room_close
from tests.channels_app.helpers import error_of, row_counts
from tests.support import make_channel, post_signed

SECRET = "in-secret-7f3a"
URL = "/webhooks/hook-in/"


def _sig_header(value: str) -> dict[str, str]:
    return {"HTTP_" + SIGNATURE_HEADER.upper().replace("-", "_"): value}


class InboundTestCase(TestCase):
    def setUp(self) -> None:
        self.channel = make_channel("hook-in", secrets={"signing_secret": SECRET})

    def post(self, payload, *, secret: str | None = SECRET, path: str = URL, **extra):
        with self.captureOnCommitCallbacks(execute=True):
            return post_signed(self.client, path, payload, secret, **extra)

    def assertRefused(self, response, status: int, code: str | None, before: dict[str, int]) -> dict:
        error = error_of(self, response, status, code)
        self.assertEqual(row_counts(), before, "a refused request must write nothing")
        return error


class AcceptedMessageTests(InboundTestCase):
    def test_signed_message_opens_a_room_and_answers_the_contract_shape(self) -> None:
        r = self.post({"id": "m-1", "sender": "+15550001", "text": "hello"})

        self.assertEqual(r.status_code, 200, r.content)
        body = r.json()
        self.assertLessEqual({"event_id", "room_id", "seq", "duplicate"}, set(body))
        self.assertIs(body["duplicate"], False)
        self.assertEqual(body["seq"], 1)
        event = RoomEvent.objects.get(pk=body["event_id"])
        self.assertEqual(event.room_id, body["room_id"])
        self.assertEqual(event.source_channel_id, "hook-in")
        self.assertEqual(event.provider_message_id, "m-1")
        self.assertEqual(event.content, {"type": "text", "body": "hello"})
        self.assertEqual(event.source_participant.address, "+15550001")
        binding = ChannelBinding.objects.get(room_id=body["room_id"], channel_id="hook-in")
        self.assertEqual(binding.address, "+15550001")

    def test_same_sender_stays_in_its_room_with_the_next_seq(self) -> None:
        first = self.post({"id": "m-1", "sender": "alice", "text": "one"}).json()
        second = self.post({"id": "m-2", "sender": "alice", "text": "two"}).json()
        other = self.post({"id": "m-3", "sender": "bob", "text": "three"}).json()

        self.assertEqual(second["room_id"], first["room_id"])
        self.assertEqual(second["seq"], 2)
        self.assertNotEqual(other["room_id"], first["room_id"])
        self.assertEqual(other["seq"], 1)
        self.assertEqual(Participant.objects.filter(room_id=first["room_id"]).count(), 1)

    def test_repeated_id_is_a_duplicate_and_stores_nothing(self) -> None:
        first = self.post({"id": "m-1", "sender": "alice", "text": "hello"}).json()
        before = row_counts()

        again = self.post({"id": "m-1", "sender": "alice", "text": "hello, edited by a replay"})

        self.assertEqual(again.status_code, 200)
        body = again.json()
        self.assertIs(body["duplicate"], True)
        self.assertEqual((body["event_id"], body["room_id"], body["seq"]), (first["event_id"], first["room_id"], first["seq"]))
        self.assertEqual(row_counts(), before)
        self.assertEqual(RoomEvent.objects.get(pk=first["event_id"]).content["body"], "hello")

    def test_numeric_id_and_string_id_are_the_same_key(self) -> None:
        first = self.post({"id": 77, "sender": "alice", "text": "hello"}).json()
        again = self.post({"id": "77", "sender": "alice", "text": "hello"}).json()

        self.assertIs(again["duplicate"], True)
        self.assertEqual(again["event_id"], first["event_id"])

    def test_the_same_id_on_another_channel_is_not_a_duplicate(self) -> None:
        make_channel("hook-b", secrets={"signing_secret": "b-secret"})
        first = self.post({"id": "m-1", "sender": "alice", "text": "hello"}).json()

        other = self.post({"id": "m-1", "sender": "alice", "text": "hello"}, secret="b-secret", path="/webhooks/hook-b/")

        self.assertEqual(other.status_code, 200)
        self.assertIs(other.json()["duplicate"], False)
        self.assertNotEqual(other.json()["event_id"], first["event_id"])

    def test_message_without_id_is_stored_every_time(self) -> None:
        a = self.post({"sender": "alice", "text": "hi"}).json()
        b = self.post({"sender": "alice", "text": "hi"}).json()

        self.assertEqual((a["duplicate"], b["duplicate"]), (False, False))
        self.assertEqual(b["seq"], a["seq"] + 1)

    def test_empty_id_counts_as_no_id(self) -> None:
        # An empty id must not become a dedup key shared by every such message
        # (the unique constraint would turn the second one into a 500).
        a = self.post({"id": "", "sender": "alice", "text": "one"})
        b = self.post({"id": "", "sender": "alice", "text": "two"})

        self.assertEqual((a.status_code, b.status_code), (200, 200), b.content)
        self.assertIs(b.json()["duplicate"], False)
        self.assertEqual(RoomEvent.objects.filter(source_channel_id="hook-in").count(), 2)
        self.assertFalse(RoomEvent.objects.filter(provider_message_id="").exists())

    def test_json_content_type_with_charset_is_accepted(self) -> None:
        r = self.post({"id": "m-1", "sender": "alice", "text": "hi"}, content_type="application/json; charset=utf-8")

        self.assertEqual(r.status_code, 200, r.content)

    def test_single_media_item_with_text_becomes_captioned_media(self) -> None:
        r = self.post(
            {
                "id": "m-1",
                "sender": "alice",
                "text": "my receipt",
                "media": [{"url": "https://cdn.example.test/r.png", "mime_type": "image/png"}],
            }
        )

        self.assertEqual(r.status_code, 200, r.content)
        self.assertEqual(
            RoomEvent.objects.get(pk=r.json()["event_id"]).content,
            {"type": "media", "url": "https://cdn.example.test/r.png", "mime_type": "image/png", "caption": "my receipt"},
        )

    def test_several_media_items_become_composite_content(self) -> None:
        r = self.post(
            {
                "id": "m-1",
                "sender": "alice",
                "text": "two files",
                "media": [
                    {"url": "https://cdn.example.test/a.png", "mime_type": "image/png"},
                    {"url": "https://cdn.example.test/b.pdf"},
                ],
            }
        )

        self.assertEqual(r.status_code, 200, r.content)
        content = RoomEvent.objects.get(pk=r.json()["event_id"]).content
        self.assertEqual(content["type"], "composite")
        self.assertEqual([p["type"] for p in content["parts"]], ["text", "media", "media"])
        self.assertEqual(content["parts"][0]["body"], "two files")
        self.assertEqual(content["parts"][2]["mime_type"], "application/octet-stream")

    def test_media_without_text_is_accepted(self) -> None:
        r = self.post(
            {"id": "m-1", "sender": "alice", "media": [{"url": "https://cdn.example.test/a.jpg", "mime_type": "image/jpeg"}]}
        )

        self.assertEqual(r.status_code, 200, r.content)
        self.assertEqual(RoomEvent.objects.get(pk=r.json()["event_id"]).content["type"], "media")

    def test_sender_whose_room_was_closed_gets_a_new_room(self) -> None:
        first = self.post({"id": "m-1", "sender": "alice", "text": "hello"}).json()
        room_close(room_id=first["room_id"])

        again = self.post({"id": "m-2", "sender": "alice", "text": "back again"}).json()

        self.assertNotEqual(again["room_id"], first["room_id"])
        self.assertEqual(again["seq"], 1)
        self.assertEqual(Room.objects.get(pk=first["room_id"]).status, "closed")


class SignatureTests(InboundTestCase):
    payload = {"id": "m-1", "sender": "alice", "text": "hello"}

    def _raw(self) -> bytes:
        return json.dumps(self.payload).encode()

    def _post_raw(self, body: bytes, headers: dict[str, str]):
        return self.client.post(URL, data=body, content_type="application/json", **headers)

    def test_missing_signature_is_403_and_stores_nothing(self) -> None:
        before = row_counts()
        self.assertRefused(self.post(self.payload, secret=None), 403, "invalid_signature", before)

    def test_signature_with_the_wrong_secret_is_403(self) -> None:
        before = row_counts()
        self.assertRefused(self.post(self.payload, secret="not-the-secret"), 403, "invalid_signature", before)

    def test_signature_of_another_body_is_403(self) -> None:
        before = row_counts()
        forged = _sig_header(sign(b'{"id": "m-0", "sender": "alice", "text": "hi"}', SECRET))
        self.assertRefused(self._post_raw(self._raw(), forged), 403, "invalid_signature", before)

    def test_malformed_signature_headers_are_403(self) -> None:
        raw = self._raw()
        good = sign(raw, SECRET)
        bad_values = [
            "",
            "sha256=",
            good.removeprefix("sha256="),  # the hex without its scheme
            "sha1=" + good.removeprefix("sha256="),
            good[:-1],
            "sha256=" + "0" * 64,
            "sha256=\u00e9\u00e9",  # not ASCII: must be refused, not crash the comparison
        ]
        before = row_counts()
        for value in bad_values:
            with self.subTest(header=value):
                self.assertRefused(self._post_raw(raw, _sig_header(value)), 403, "invalid_signature", before)

    def test_channel_without_a_signing_secret_refuses_everything(self) -> None:
        make_channel("no-secret")
        before = row_counts()
        r = self.post(self.payload, secret="", path="/webhooks/no-secret/")
        self.assertRefused(r, 403, "invalid_signature", before)

    def test_signature_is_checked_before_the_body_is_parsed(self) -> None:
        before = row_counts()
        r = self.client.post(URL, data=b"{not json", content_type="application/json")
        self.assertRefused(r, 403, "invalid_signature", before)

    def test_signature_survives_surrounding_whitespace(self) -> None:
        raw = self._raw()
        with self.captureOnCommitCallbacks(execute=True):
            r = self._post_raw(raw, _sig_header(f"  {sign(raw, SECRET)} "))
        self.assertEqual(r.status_code, 200, r.content)


class RefusedRequestTests(InboundTestCase):
    """Each way a caller can get it wrong: a JSON 4xx, never a 500, nothing written."""

    def test_malformed_json_is_400(self) -> None:
        bodies = [b"{not json", b'{"id": "m-1",', b"\xff\xfe\x00garbage", b"[" * 50_000 + b"]" * 50_000]
        before = row_counts()
        for body in bodies:
            with self.subTest(body=body[:20]):
                self.assertRefused(self.post(body), 400, "malformed_json", before)

    def test_empty_body_is_400(self) -> None:
        before = row_counts()
        # The test client drops Content-Type for an empty body unless told explicitly.
        r = self.post(b"", CONTENT_TYPE="application/json")
        self.assertRefused(r, 400, "malformed_json", before)

    def test_json_that_is_not_an_object_is_400(self) -> None:
        before = row_counts()
        for payload in ([{"id": "m-1", "sender": "alice", "text": "hi"}], "hello", 42, None, True):
            with self.subTest(payload=payload):
                self.assertRefused(self.post(payload), 400, "malformed_json", before)

    def test_text_no_database_can_store_is_400(self) -> None:
        # Valid JSON escapes, but PostgreSQL refuses NUL and unpaired surrogates:
        # refused up front, the same on every database.
        bodies = [
            b'{"sender": "a", "text": "nul \\u0000 inside"}',
            b'{"sender": "a\\u0000b", "text": "hi"}',
            b'{"sender": "a", "id": "\\u0000", "text": "hi"}',
            b'{"sender": "a", "text": "\\ud800"}',
            b'{"sender": "a", "text": "hi", "display_name": "\\udfff"}',
            b'{"sender": "a", "text": "hi", "media": [{"url": "https://x.test/a", "mime_type": "\\ud800"}]}',
        ]
        before = row_counts()
        for body in bodies:
            with self.subTest(body=body):
                self.assertRefused(self.post(body), 400, "invalid_text", before)

    def test_paired_surrogates_are_ordinary_text(self) -> None:
        r = self.post(b'{"sender": "a", "text": "\\ud83d\\ude00"}')

        self.assertEqual(r.status_code, 200, r.content)
        self.assertEqual(RoomEvent.objects.get(pk=r.json()["event_id"]).content["body"], "\U0001f600")

    def test_wrong_content_type_is_415(self) -> None:
        before = row_counts()
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/xml", "application/jsonx"):
            with self.subTest(content_type=ctype):
                r = self.post({"id": "m-1", "sender": "alice", "text": "hi"}, content_type=ctype)
                self.assertRefused(r, 415, "unsupported_media_type", before)

    def test_missing_or_invalid_fields_are_400(self) -> None:
        cases = {
            "no sender": ({"id": "m-1", "text": "hi"}, "missing_field"),
            "null sender": ({"id": "m-1", "sender": None, "text": "hi"}, "missing_field"),
            "empty sender": ({"id": "m-1", "sender": "", "text": "hi"}, "invalid_field"),
            "sender is a list": ({"id": "m-1", "sender": ["alice"], "text": "hi"}, "invalid_field"),
            "sender is a bool": ({"id": "m-1", "sender": True, "text": "hi"}, "invalid_field"),
            "text is an object": ({"id": "m-1", "sender": "alice", "text": {"body": "hi"}}, "invalid_field"),
            "no text nor media": ({"id": "m-1", "sender": "alice"}, "missing_field"),
            "empty text": ({"id": "m-1", "sender": "alice", "text": ""}, "missing_field"),
            "id is an object": ({"id": {"x": 1}, "sender": "alice", "text": "hi"}, "invalid_field"),
            "media not a list": ({"id": "m-1", "sender": "alice", "media": {"url": "https://x.test/a"}}, "invalid_field"),
            "media item without url": ({"id": "m-1", "sender": "alice", "media": [{"mime_type": "image/png"}]}, "invalid_field"),
            "media item not an object": ({"id": "m-1", "sender": "alice", "media": ["https://x.test/a"]}, "invalid_field"),
            "id too long": ({"id": "x" * 256, "sender": "alice", "text": "hi"}, None),
            "sender too long": ({"id": "m-1", "sender": "a" * 256, "text": "hi"}, None),
            "media url empty": ({"id": "m-1", "sender": "alice", "media": [{"url": ""}]}, "invalid_content"),
        }
        before = row_counts()
        for label, (payload, code) in cases.items():
            with self.subTest(label):
                self.assertRefused(self.post(payload), 400, code, before)

    def test_unknown_channel_is_404_json(self) -> None:
        before = row_counts()
        r = self.post({"id": "m-1", "sender": "alice", "text": "hi"}, path="/webhooks/no-such-channel/")
        self.assertRefused(r, 404, "unknown_channel", before)

    def test_path_that_is_not_a_channel_id_is_404_json(self) -> None:
        before = row_counts()
        r = self.post({"id": "m-1", "sender": "alice", "text": "hi"}, path="/webhooks/not.a.slug/")
        self.assertRefused(r, 404, None, before)

    def test_disabled_channel_is_404(self) -> None:
        make_channel("off", secrets={"signing_secret": "s"}, enabled=False)
        before = row_counts()
        r = self.post({"id": "m-1", "sender": "alice", "text": "hi"}, secret="s", path="/webhooks/off/")
        self.assertRefused(r, 404, "unknown_channel", before)

    def test_channel_without_a_webhook_provider_is_404(self) -> None:
        make_channel("plain-sms", channel_type="sms", provider="", secrets={"signing_secret": "s"})
        before = row_counts()
        r = self.post({"id": "m-1", "sender": "alice", "text": "hi"}, secret="s", path="/webhooks/plain-sms/")
        self.assertRefused(r, 404, "unknown_channel", before)

    def test_channel_that_opens_no_rooms_refuses_a_new_sender(self) -> None:
        make_channel("closed-door", secrets={"signing_secret": "s"}, creates_rooms=False)
        before = row_counts()
        r = self.post({"id": "m-1", "sender": "stranger", "text": "hi"}, secret="s", path="/webhooks/closed-door/")
        self.assertRefused(r, 403, "no_room", before)

    @override_settings(ROOMKIT_MAX_BODY_BYTES=256)
    def test_oversize_body_is_413_before_anything_reads_it(self) -> None:
        before = row_counts()
        r = self.post({"id": "m-1", "sender": "alice", "text": "x" * 300})
        self.assertRefused(r, 413, "body_too_large", before)

    @override_settings(ROOMKIT_MAX_BODY_BYTES=256)
    def test_body_at_the_limit_is_accepted(self) -> None:
        payload = {"id": "m-1", "sender": "alice", "text": ""}
        payload["text"] = "x" * (256 - len(json.dumps(payload).encode()))
        self.assertEqual(len(json.dumps(payload).encode()), 256)

        r = self.post(payload)

        self.assertEqual(r.status_code, 200, r.content)

    def test_content_length_that_is_not_a_number_is_400(self) -> None:
        before = row_counts()
        r = self.post({"id": "m-1", "sender": "alice", "text": "hi"}, CONTENT_LENGTH="lots")
        self.assertRefused(r, 400, "bad_content_length", before)

    def test_other_methods_are_405_json(self) -> None:
        before = row_counts()
        for method in ("get", "put", "patch", "delete"):
            with self.subTest(method=method):
                r = getattr(self.client, method)(URL)
                self.assertRefused(r, 405, "method_not_allowed", before)
        self.assertRefused(self.client.get("/webhooks/hook-in/status/"), 405, "method_not_allowed", before)

    def test_no_bad_input_is_a_server_error(self) -> None:
        # A sweep of odd but well-signed bodies: each must be answered, in the error shape when refused.
        bodies = [
            b"{}",
            b'{"sender": "a", "text": "hi", "media": null}',
            b'{"sender": "a", "text": "hi", "media": []}',
            b'{"sender": "a", "text": 12345}',
            b'{"sender": 1e309, "text": "hi"}',
            b'{"sender": "a", "text": "' + b"9" * 5000 + b'"}',
            b'{"sender": "a", "id": ' + b"9" * 5000 + b', "text": "hi"}',
            b'{"sender": "a", "text": "hi", "media": [{"url": "' + b"u" * 3000 + b'"}]}',
            b'{"sender": "a", "text": "\\ud800"}',
            b'{"sender": "a", "text": "nul \\u0000 inside"}',
            b'{"sender": "a\\u0000b", "text": "hi"}',
            b'{"sender": "a", "id": "\\u0000", "text": "hi"}',
            b'{"sender": "a", "text": "hi", "display_name": "\\udfff"}',
            b'{"sender": "a", "text": "\\ud83d\\ude00 paired surrogates are fine"}',
            '{"sender": "\u00e9", "text": "\u263a"}'.encode(),
            b"\xef\xbb\xbf" + b'{"sender": "a", "text": "bom"}',
        ]
        for body in bodies:
            with self.subTest(body=body[:40]):
                r = self.post(body)
                self.assertLess(r.status_code, 500)
                if r.status_code != 200:
                    error_of(self, r, r.status_code)
