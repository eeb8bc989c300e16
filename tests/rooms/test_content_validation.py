"""Bad content is a clear InvalidInput, the same on every database, and writes nothing."""

from __future__ import annotations

from django.test import TestCase

from rooms.content.kinds import MAX_TEXT, validate_content
from rooms.enums import ChannelType
from rooms.errors import InvalidInput
from rooms.models import Room
from tests.rooms.fixtures import row_counts, send
from tests.support import make_channel

TEXT = {"type": "text", "body": "ok"}
MEDIA = {"type": "media", "url": "https://cdn/x.png", "mime_type": "image/png"}

BAD_CONTENT: dict[str, object] = {
    "not an object": "hello",
    "a list": [TEXT],
    "no type": {"body": "hello"},
    "unknown type": {"type": "hologram", "body": "x"},
    "empty text": {"type": "text", "body": ""},
    "text too long": {"type": "text", "body": "x" * (MAX_TEXT + 1)},
    "body not a string": {"type": "text", "body": 42},
    "unknown field": {"type": "text", "body": "hi", "colour": "red"},
    "media without url": {"type": "media", "mime_type": "image/png"},
    "media with empty url": {**MEDIA, "url": ""},
    "media with negative size": {**MEDIA, "size": -1},
    "latitude out of range": {"type": "location", "latitude": 91, "longitude": 0},
    "longitude out of range": {"type": "location", "latitude": 0, "longitude": -180.5},
    "latitude not a number": {"type": "location", "latitude": "north", "longitude": 0},
    "latitude NaN": {"type": "location", "latitude": float("nan"), "longitude": 0},
    "rich with unknown format": {"type": "rich", "body": "x", "format": "rtf"},
    "composite without parts": {"type": "composite", "parts": []},
    "composite of composites": {"type": "composite", "parts": [{"type": "composite", "parts": [TEXT]}]},
    "composite with a bad part": {"type": "composite", "parts": [TEXT, {"type": "text", "body": ""}]},
    "composite too large": {"type": "composite", "parts": [TEXT] * 21},
    "edit without new content": {"type": "edit", "target_event_id": "e1"},
    "delete without target": {"type": "delete"},
    # Storable by SQLite, refused by PostgreSQL's jsonb: refused everywhere.
    "NUL in text": {"type": "text", "body": "a\x00b"},
    "NUL in rich": {"type": "rich", "body": "a\x00b"},
    "NaN in metadata": {"type": "text", "body": "hi", "metadata": {"score": float("nan")}},
    "infinity in buttons": {"type": "rich", "body": "hi", "buttons": [{"title": "x", "weight": float("inf")}]},
    "not JSON at all": {"type": "rich", "body": "hi", "buttons": [{"title": object()}]},
}


class ValidateContentTests(TestCase):
    def test_each_bad_content_is_invalid_input_naming_the_problem(self) -> None:
        for label, content in BAD_CONTENT.items():
            with self.subTest(label):
                with self.assertRaises(InvalidInput) as caught:
                    validate_content(content)
                self.assertEqual(caught.exception.code, "invalid_content")
                self.assertEqual(caught.exception.status, 400)

    def test_good_content_is_normalised(self) -> None:
        self.assertEqual(
            validate_content({"type": "rich", "body": "*hi*"}), {"type": "rich", "body": "*hi*", "format": "markdown"}
        )
        self.assertEqual(
            validate_content({**MEDIA, "caption": None, "filename": "x.png"}),
            {**MEDIA, "filename": "x.png"},
        )
        self.assertEqual(validate_content({"type": "text", "body": "x" * MAX_TEXT})["body"], "x" * MAX_TEXT)
        edit = {"type": "edit", "target_event_id": "e1", "new_content": {"type": "text", "body": "fixed"}}
        self.assertEqual(validate_content(edit), edit)


class NothingWrittenTests(TestCase):
    def setUp(self) -> None:
        make_channel("sms-in", channel_type=ChannelType.SMS, provider="")

    def test_bad_first_message_opens_no_room(self) -> None:
        for label, content in BAD_CONTENT.items():
            with self.subTest(label):
                before = row_counts()
                with self.assertRaises(InvalidInput):
                    send("sms-in", "+1555", content=content)
                self.assertEqual(row_counts(), before)

    def test_bad_message_in_a_room_takes_no_seq(self) -> None:
        room_id = send("sms-in", "+1555").room_id
        before = row_counts()
        for label, content in BAD_CONTENT.items():
            with self.subTest(label):
                with self.assertRaises(InvalidInput):
                    send("sms-in", "+1555", content=content)
        self.assertEqual(row_counts(), before)
        self.assertEqual(send("sms-in", "+1555").seq, 2)
        self.assertEqual(Room.objects.get(pk=room_id).last_seq, 2)

    def test_message_without_content(self) -> None:
        with self.assertRaises(InvalidInput) as caught:
            send("sms-in", "+1555", text=None)
        self.assertEqual(caught.exception.code, "invalid_content")

    def test_text_with_nul_is_refused_the_same_on_every_database(self) -> None:
        before = row_counts()
        with self.assertRaises(InvalidInput):
            send("sms-in", "+1555", text="nul \x00 here")
        self.assertEqual(row_counts(), before)

    def test_unknown_event_type(self) -> None:
        with self.assertRaises(InvalidInput) as caught:
            send("sms-in", "+1555", event_type="shout")
        self.assertEqual(caught.exception.code, "invalid_event_type")
        self.assertEqual(Room.objects.count(), 0)

    def test_bad_keys_and_sender(self) -> None:
        cases = {
            "idempotency key too long": {"idempotency_key": "k" * 256},
            "provider id too long": {"provider_message_id": "p" * 256},
            "idempotency key not a string": {"idempotency_key": 7},
            "sender too long": {"sender": "s" * 256},
        }
        for label, fields in cases.items():
            with self.subTest(label):
                fields = {"sender": "+1555", **fields}
                with self.assertRaises(InvalidInput):
                    send("sms-in", **fields)
        self.assertEqual(Room.objects.count(), 0)
        self.assertEqual(send("sms-in", "s" * 255, idempotency_key="k" * 255).status, "stored")
