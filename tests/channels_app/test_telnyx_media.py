"""Inbound MMS on Telnyx: ``payload.media[].url`` fetched, stored, kept as media content.

Telnyx's media links are short-lived and public (presigned: no credentials),
so the adapter fetches each while it answers the webhook, through
``channels_app.inbound_media`` as Twilio's does. The media live on a local
fake media host (a real HTTP server that records what it was sent); the
documented MMS webhook is posted with its link pointed there. Files land in a
temporary ``MEDIA_ROOT``.
"""

from __future__ import annotations

from pathlib import Path

from django.core.files.storage import default_storage

from rooms.models import RoomEvent
from tests.channels_app.fakes.telnyx import fixture
from tests.channels_app.helpers import use_temporary_media_root
from tests.channels_app.test_telnyx_support import TelnyxTestCase
from tests.support import FakeHTTPServer, RecordedRequest

BASE = "https://roomkit.example.test"
URL = "/webhooks/tx-sms/"
STATUS_URL = "/webhooks/tx-sms/status/"
MESSAGE_ID = "b301ed3f-1490-491f-995f-6e64e69674d4"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x01" * 60
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00" + b"\x02" * 40


class TelnyxMediaTests(TelnyxTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.files: dict[str, tuple[bytes, str]] = {}
        cls.media_host = cls.enterClassContext(FakeHTTPServer(handler=cls._serve_file))

    @classmethod
    def _serve_file(cls, req: RecordedRequest) -> tuple[int, bytes, dict[str, str]]:
        path = req.path.split("?", 1)[0]
        if path not in cls.files:
            return 404, b"<Error><Code>NoSuchKey</Code></Error>", {"Content-Type": "application/xml"}
        data, content_type = cls.files[path]
        return 200, data, {"Content-Type": content_type}

    def setUp(self) -> None:
        super().setUp()
        self.files.clear()
        self.media_host.requests.clear()
        self.media_root = use_temporary_media_root(self, public_base_url=BASE)
        self.make_telnyx_channel()

    def mms(self, *media: tuple[str, str]) -> dict:
        """The documented MMS webhook, its media (``(path, content_type)``) on the fake media host."""
        payload = fixture("inbound_mms.json")
        documented = payload["data"]["payload"]["media"][0]
        payload["data"]["payload"]["media"] = [
            {**documented, "url": f"{self.media_host.url}{path}?X-Amz-Signature=abc", "content_type": content_type}
            for path, content_type in media
        ]
        return payload

    def post(self, payload: dict, url: str = URL):
        response = self.post_webhook(url, payload)
        self.assertEqual(response.status_code, 200, response.content[:300])
        return response

    def only_event(self) -> RoomEvent:
        events = list(RoomEvent.objects.all())
        self.assertEqual(len(events), 1)
        return events[0]

    def stored_files(self) -> list[Path]:
        return sorted(p for p in self.media_root.rglob("*") if p.is_file())

    def assert_stored(self, part: dict, data: bytes) -> None:
        self.assertTrue(part["url"].startswith(f"{BASE}/media/inbound/telnyx/"), part["url"])
        with default_storage.open(part["url"].removeprefix(f"{BASE}/media/"), "rb") as stored:
            self.assertEqual(stored.read(), data)

    def test_the_documented_mms_is_fetched_without_credentials_and_stored(self) -> None:
        self.files["/7ee4241c/photo.jpg"] = (JPEG, "image/jpeg")

        self.post(self.mms(("/7ee4241c/photo.jpg", "image/jpeg")))

        (get,) = self.media_host.requests
        self.assertEqual((get.method, get.path), ("GET", "/7ee4241c/photo.jpg?X-Amz-Signature=abc"))
        self.assertNotIn("authorization", {k.lower() for k in get.headers}, "Telnyx's API key never goes to a media link")
        event = self.only_event()
        self.assertEqual(event.provider_message_id, MESSAGE_ID)
        content = event.content
        self.assertEqual(
            (content["type"], content["mime_type"], content["size"], content["caption"]),
            ("media", "image/jpeg", len(JPEG), "Check out this photo"),
        )
        self.assert_stored(content, JPEG)
        self.assertNotIn("media_errors", event.metadata)

    def test_several_media_become_one_composite_event_typed_by_their_bytes(self) -> None:
        self.files["/m/photo.jpg"] = (JPEG, "image/jpeg")
        # Labelled as a picture; its bytes say video, and the bytes decide.
        self.files["/m/clip"] = (MP4, "image/jpeg")

        self.post(self.mms(("/m/photo.jpg", "image/jpeg"), ("/m/clip", "image/jpeg")))

        text, photo, clip = self.only_event().content["parts"]
        self.assertEqual(text, {"type": "text", "body": "Check out this photo"})
        self.assertEqual([p["mime_type"] for p in (photo, clip)], ["image/jpeg", "video/mp4"])
        self.assert_stored(photo, JPEG)
        self.assert_stored(clip, MP4)
        self.assertEqual(len(self.stored_files()), 2)

    def test_a_message_is_kept_when_a_link_has_expired(self) -> None:
        self.files["/m/photo.jpg"] = (JPEG, "image/jpeg")

        with self.assertLogs("channels_app.providers.telnyx", "WARNING"):
            self.post(self.mms(("/m/photo.jpg", "image/jpeg"), ("/m/expired.mp4", "video/mp4")))

        event = self.only_event()
        text, photo, lost = event.content["parts"]
        self.assertEqual((text["body"], photo["mime_type"]), ("Check out this photo", "image/jpeg"))
        self.assertEqual(lost, {"type": "text", "body": "[video/mp4 could not be retrieved]"})
        self.assertEqual(event.metadata["media_errors"], [{"index": "1", "error": "http_404", "declared_type": "video/mp4"}])

    def test_a_repeated_mms_fetches_nothing_again(self) -> None:
        self.files["/m/photo.jpg"] = (JPEG, "image/jpeg")
        payload = self.mms(("/m/photo.jpg", "image/jpeg"))
        first = self.post(payload).json()

        payload["meta"]["attempt"] = 2
        again = self.post(payload).json()

        self.assertEqual((again["event_id"], again["duplicate"]), (first["event_id"], True))
        self.assertEqual(len(self.media_host.requests), 1)
        self.assertEqual(len(self.stored_files()), 1)

    def test_an_mms_on_the_status_url_gets_its_media_too(self) -> None:
        self.files["/m/photo.jpg"] = (JPEG, "image/jpeg")

        r = self.post(self.mms(("/m/photo.jpg", "image/jpeg")), url=STATUS_URL)

        self.assertEqual(r.json(), {"updated": 0})
        self.assert_stored(self.only_event().content, JPEG)
