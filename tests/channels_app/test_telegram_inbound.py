"""Inbound Telegram updates: the secret header, update_id dedup, every message kind, buttons, edits.

Updates are the documented fixtures beside the adapter, posted as Telegram
posts them; files are served by the fake Bot API (``getFile``, then
``/file/bot<token>/<path>``) and land in a temporary ``MEDIA_ROOT``.
"""

from __future__ import annotations

import copy

from django.core.files.storage import default_storage

from rooms.enums import EventType
from rooms.models import ChannelBinding, Participant, RoomEvent
from tests.channels_app.fakes.telegram import fixture
from tests.channels_app.helpers import error_of, row_counts, use_temporary_media_root
from tests.channels_app.test_telegram_support import CHAT, TelegramTestCase

BASE = "https://roomkit.example.test"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x01" * 60
OGG = b"OggS\x00\x02" + b"\x00" * 40
PDF = b"%PDF-1.7\n" + b"\x03" * 40


class TelegramInboundTests(TelegramTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.media_root = use_temporary_media_root(self, public_base_url=BASE)
        self.make_telegram_channel()

    def stored_event(self) -> RoomEvent:
        events = list(RoomEvent.objects.filter(source_channel_id="tg"))
        self.assertEqual(len(events), 1, [e.content for e in events])
        return events[0]

    def assert_file(self, url: str, data: bytes) -> None:
        self.assertTrue(url.startswith(f"{BASE}/media/inbound/telegram/"), url)
        with default_storage.open(url.removeprefix(f"{BASE}/media/"), "rb") as stored:
            self.assertEqual(stored.read(), data)

    # --- the secret header ------------------------------------------------------------------

    def test_a_text_message_opens_a_room_for_the_chat_with_the_senders_name(self) -> None:
        response = self.post_update(fixture("update_text.json"))
        self.assertEqual(response.status_code, 200, response.content)
        self.assertFalse(response.json()["duplicate"])
        event = self.stored_event()
        self.assertEqual(event.content, {"type": "text", "body": "/start"})
        self.assertEqual(event.provider_message_id, f"{CHAT}:1365")
        self.assertEqual(event.idempotency_key, "update:10000")
        self.assertEqual(event.metadata["telegram"]["from"]["username"], "Test")
        binding = ChannelBinding.objects.get(channel_id="tg")
        self.assertEqual(binding.address, CHAT)
        self.assertEqual(Participant.objects.get(pk=event.source_participant_id).display_name, "Test Lastname")

    def test_a_missing_or_wrong_secret_is_403_and_stores_nothing(self) -> None:
        before = row_counts()
        for secret in (None, "", "wrong", "s3cr3t-Token_for-tg ", "S3CR3T-TOKEN_FOR-TG"):
            with self.subTest(secret=secret):
                error_of(self, self.post_update(fixture("update_text.json"), secret=secret), 403, "invalid_signature")
        self.assertEqual(row_counts(), before)

    def test_a_channel_without_a_webhook_secret_refuses_every_update(self) -> None:
        self.make_telegram_channel("tg-nosecret", secrets={"bot_token": self.telegram.token})
        before = row_counts()
        error_of(self, self.post_update(fixture("update_text.json"), path="/webhooks/tg-nosecret/"), 403)
        self.assertEqual(row_counts(), before)

    def test_a_repeated_update_id_stores_nothing_new_and_answers_200(self) -> None:
        first = self.post_update(fixture("update_text.json"))
        before = row_counts()
        again = self.post_update(fixture("update_text.json"))
        self.assertEqual(again.status_code, 200)
        self.assertTrue(again.json()["duplicate"])
        self.assertEqual(again.json()["event_id"], first.json()["event_id"])
        self.assertEqual(row_counts(), before)

    def test_bad_bodies_are_4xx_and_store_nothing(self) -> None:
        before = row_counts()
        for body in (
            b"not json",
            b"[]",
            b'{"message": {}}',
            b'{"update_id": "x"}',
            b'{"update_id": 5, "message": {"message_id": 1}}',
        ):
            with self.subTest(body=body):
                response = self.post_update(body)
                self.assertEqual(response.status_code, 400, response.content)
        self.assertEqual(row_counts(), before)

    def test_update_kinds_and_message_kinds_we_do_not_take_are_acknowledged(self) -> None:
        before = row_counts()
        member = {"update_id": 20, "my_chat_member": {"chat": {"id": 1, "type": "private"}}}
        sticker = copy.deepcopy(fixture("update_text.json"))
        del sticker["message"]["text"]
        sticker["message"]["sticker"] = {"file_id": "x", "width": 1, "height": 1}
        for update in (member, sticker):
            response = self.post_update(update)
            self.assertEqual(response.status_code, 200, response.content)
            self.assertIn("ignored", response.json())
        self.assertEqual(row_counts(), before)

    # --- media -------------------------------------------------------------------------------

    def test_the_largest_photo_is_fetched_with_getfile_and_stored_with_its_caption(self) -> None:
        self.telegram.files["AgACAgQAAxkBAAIBQ2Large"] = ("photos/file_0.jpg", JPEG)
        self.assertEqual(self.post_update(fixture("update_photo.json")).status_code, 200)
        content = self.stored_event().content
        self.assertEqual(content["type"], "media")
        self.assertEqual(content["mime_type"], "image/jpeg")
        self.assertEqual(content["caption"], "the parcel as it arrived")
        self.assert_file(content["url"], JPEG)
        self.assertEqual(self.telegram.calls("getFile"), [{"file_id": "AgACAgQAAxkBAAIBQ2Large"}])
        self.assertIn(f"/file/bot{self.telegram.token}/photos/file_0.jpg", [r.path for r in self.telegram.requests])
        # The bot token is in the file's URL: it must not reach the event.
        self.assertNotIn(self.telegram.token, str(RoomEvent.objects.values_list("content", "metadata").first()))

    def test_a_repeated_photo_update_fetches_nothing(self) -> None:
        self.telegram.files["AgACAgQAAxkBAAIBQ2Large"] = ("photos/file_0.jpg", JPEG)
        self.post_update(fixture("update_photo.json"))
        self.telegram.requests.clear()
        self.assertTrue(self.post_update(fixture("update_photo.json")).json()["duplicate"])
        self.assertEqual(self.telegram.requests, [])

    def test_a_document_keeps_its_file_name(self) -> None:
        self.telegram.files["BQACAgQAAxkBAAIBRDocument"] = ("documents/file_1.pdf", PDF)
        self.post_update(fixture("update_document.json"))
        content = self.stored_event().content
        self.assertEqual(
            (content["type"], content["mime_type"], content["filename"]), ("media", "application/pdf", "invoice-1003.pdf")
        )
        self.assert_file(content["url"], PDF)

    def test_a_voice_note_is_stored_as_audio_content(self) -> None:
        self.telegram.files["AwACAgQAAxkBAAIBRVoice"] = ("voice/file_2.oga", OGG)
        self.post_update(fixture("update_voice.json"))
        content = self.stored_event().content
        self.assertEqual(content["type"], "audio")
        self.assertEqual((content["mime_type"], content["duration_ms"]), ("audio/ogg", 3000))
        self.assert_file(content["url"], OGG)

    def test_a_file_telegram_cannot_give_keeps_the_message_and_notes_why(self) -> None:
        # No such file_id at the fake: getFile answers 400.
        self.assertEqual(self.post_update(fixture("update_photo.json")).status_code, 200)
        event = self.stored_event()
        self.assertEqual(event.content["type"], "text")
        self.assertIn("the parcel as it arrived", event.content["body"])
        self.assertIn("[photo could not be retrieved]", event.content["body"])
        self.assertEqual(event.metadata["media_errors"][0]["error"], "getfile_400")

    def test_a_location(self) -> None:
        self.post_update(fixture("update_location.json"))
        self.assertEqual(self.stored_event().content, {"type": "location", "latitude": 48.858093, "longitude": 2.294694})

    # --- buttons and edits ------------------------------------------------------------------

    def test_a_button_press_is_the_users_reply_and_the_answer_stops_the_spinner(self) -> None:
        response = self.post_update(fixture("update_callback_query.json"))
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.json(), {"method": "answerCallbackQuery", "callback_query_id": "4382bfdwdsb323b2d9"})
        event = self.stored_event()
        self.assertEqual(event.content, {"type": "text", "body": "Track my order"})
        self.assertEqual(event.metadata["postback_data"], "track_order")
        self.assertEqual(ChannelBinding.objects.get(channel_id="tg").address, CHAT)
        before = row_counts()
        self.assertEqual(self.post_update(fixture("update_callback_query.json")).status_code, 200)
        self.assertEqual(row_counts(), before)

    def test_an_edited_message_becomes_an_edit_of_the_earlier_event(self) -> None:
        original = self.post_update(fixture("update_text.json")).json()
        response = self.post_update(fixture("update_edited_message.json"))
        self.assertEqual(response.status_code, 200, response.content)
        edit = RoomEvent.objects.get(pk=response.json()["event_id"])
        self.assertEqual(edit.type, EventType.EDIT)
        self.assertEqual(
            edit.content,
            {"type": "edit", "target_event_id": original["event_id"], "new_content": {"type": "text", "body": "Edited text"}},
        )
        self.assertIsNotNone(RoomEvent.objects.get(pk=original["event_id"]).edited_at)
        before = row_counts()
        self.assertTrue(self.post_update(fixture("update_edited_message.json")).json()["duplicate"])
        self.assertEqual(row_counts(), before)

    def test_an_edited_caption_keeps_the_stored_photo(self) -> None:
        self.telegram.files["AgACAgQAAxkBAAIBQ2Large"] = ("photos/file_0.jpg", JPEG)
        original = self.post_update(fixture("update_photo.json")).json()
        edited = fixture("update_photo.json")
        edited["update_id"] = 10010
        edited["edited_message"] = edited.pop("message")
        edited["edited_message"]["caption"] = "actually, the box was dented"
        self.telegram.requests.clear()
        edit = RoomEvent.objects.get(pk=self.post_update(edited).json()["event_id"])
        stored = RoomEvent.objects.get(pk=original["event_id"]).content
        self.assertEqual(edit.content["new_content"], {**stored, "caption": "actually, the box was dented"})
        self.assertEqual(self.telegram.requests, [])

    def test_an_edit_of_a_message_we_never_saw_is_stored_as_a_message(self) -> None:
        response = self.post_update(fixture("update_edited_message.json"))
        event = RoomEvent.objects.get(pk=response.json()["event_id"])
        self.assertEqual((event.type, event.content["body"]), (EventType.MESSAGE, "Edited text"))
        self.assertTrue(event.metadata["telegram"]["edited"])
