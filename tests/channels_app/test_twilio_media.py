"""Inbound MMS: Twilio's ``MediaUrl{N}`` fetched with the account's credentials, stored, kept as media content.

The media live on a fake Twilio (``fakes.twilio.FakeTwilio``, a real HTTP
server that refuses a request without the account's Basic auth) which, like
Twilio, may redirect to a CDN: a second real server that records whether it
was sent any credentials. Files land in a temporary ``MEDIA_ROOT``.
"""

from __future__ import annotations

from pathlib import Path

from django.core.files.storage import default_storage
from django.test import TestCase, override_settings

from channels_app.inbound_media import (
    MediaFetchError,
    fetch_inbound_media,
    open_inbound_media,
    sniff_media_type,
    store_inbound_media,
)
from rooms.errors import NotFound
from rooms.models import RoomEvent
from tests.channels_app.fakes.twilio import FakeTwilio, fixture, post_as_twilio
from tests.channels_app.helpers import use_temporary_media_root
from tests.channels_app.test_twilio_inbound import ACCOUNT, BASE, TOKEN, twilio_channel
from tests.support import FakeHTTPServer, RecordedRequest

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 40
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x01" * 60
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"
ME_0 = "ME0a1b2c3d4e5f60718293a4b5c6d7e8f9"
ME_1 = "ME1a1b2c3d4e5f60718293a4b5c6d7e8f9"
URL = "/webhooks/tw-sms/"


class TwilioMediaTestCase(TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.twilio = cls.enterClassContext(FakeTwilio(account_sid=ACCOUNT, auth_token=TOKEN))
        cls.cdn_files: dict[str, tuple[bytes, str]] = {}
        cls.cdn = cls.enterClassContext(FakeHTTPServer(handler=cls._cdn_answer))

    @classmethod
    def _cdn_answer(cls, req: RecordedRequest) -> tuple[int, bytes, dict[str, str]]:
        name = req.path.rsplit("/", 1)[-1]
        if name not in cls.cdn_files:
            return 404, b"no such object", {"Content-Type": "text/plain"}
        data, content_type = cls.cdn_files[name]
        return 200, data, {"Content-Type": content_type}

    def setUp(self) -> None:
        self.twilio.reset()
        self.cdn.requests.clear()
        self.cdn_files.clear()
        self.media_root = use_temporary_media_root(self, public_base_url=BASE)
        twilio_channel(api_base=self.twilio.url)

    def mms(self, **changes: str) -> dict[str, str]:
        form = fixture("inbound_mms.json")
        for key in ("MediaUrl0", "MediaUrl1"):
            form[key] = form[key].replace("{api_base}", self.twilio.url)
        form.update(changes)
        return form

    def post(self, form: dict):
        with self.captureOnCommitCallbacks(execute=True):
            response = post_as_twilio(self.client, URL, form, auth_token=TOKEN)
        self.assertEqual(response.status_code, 200, response.content[:300])
        self.assertTrue(response["Content-Type"].startswith("text/xml"))
        return response

    def media_gets(self) -> list:
        return [r for r in self.twilio.requests if r.method == "GET" and "/Media/" in r.path]

    def stored_files(self) -> list[Path]:
        return sorted(p for p in self.media_root.rglob("*") if p.is_file())

    def only_event(self) -> RoomEvent:
        events = list(RoomEvent.objects.all())
        self.assertEqual(len(events), 1)
        return events[0]


class MMSTests(TwilioMediaTestCase):
    def test_media_are_fetched_with_the_accounts_credentials_and_stored(self) -> None:
        self.twilio.media.update({ME_0: (JPEG, "image/jpeg"), ME_1: (PDF, "application/pdf")})

        self.post(self.mms())

        gets = self.media_gets()
        self.assertEqual([g.path.rsplit("/", 1)[-1] for g in gets], [ME_0, ME_1])
        self.assertEqual({g.basic_auth() for g in gets}, {(ACCOUNT, TOKEN)})
        content = self.only_event().content
        self.assertEqual(content["type"], "composite")
        text, jpeg, pdf = content["parts"]
        self.assertEqual(text, {"type": "text", "body": "Here is the receipt"})
        self.assertEqual((jpeg["type"], jpeg["mime_type"], jpeg["size"]), ("media", "image/jpeg", len(JPEG)))
        self.assertEqual((pdf["mime_type"], pdf["size"]), ("application/pdf", len(PDF)))
        for part, data in ((jpeg, JPEG), (pdf, PDF)):
            self.assertTrue(part["url"].startswith(f"{BASE}/media/inbound/twilio/"), part["url"])
            name = part["url"].removeprefix(f"{BASE}/media/")
            with default_storage.open(name, "rb") as stored:
                self.assertEqual(stored.read(), data)
        self.assertEqual(len(self.stored_files()), 2)

    def test_stored_media_are_served_at_their_url(self) -> None:
        self.twilio.media.update({ME_0: (JPEG, "image/jpeg"), ME_1: (PDF, "application/pdf")})
        self.post(self.mms())

        _, jpeg, pdf = self.only_event().content["parts"]
        for part, data, disposition in ((jpeg, JPEG, "inline"), (pdf, PDF, "attachment")):
            response = self.client.get(part["url"].removeprefix(BASE))
            self.assertEqual(response.status_code, 200)
            self.assertEqual(b"".join(response.streaming_content), data)
            self.assertEqual(response["Content-Type"], part["mime_type"])
            self.assertEqual(response["Content-Disposition"], disposition)
            self.assertEqual(response["X-Content-Type-Options"], "nosniff")
        self.assertEqual(self.client.get("/media/inbound/twilio/not-stored.jpg").status_code, 404)

    def test_the_redirect_to_the_cdn_is_followed_without_the_credentials(self) -> None:
        self.twilio.media[ME_0] = (b"", "")
        self.twilio.media_redirect = self.cdn.url + "/cdn"
        self.cdn_files[ME_0] = (PNG, "image/png")

        self.post(self.mms(NumMedia="1", MediaContentType0="image/png"))

        (twilio_get,) = self.media_gets()
        self.assertEqual(twilio_get.basic_auth(), (ACCOUNT, TOKEN))
        (cdn_get,) = self.cdn.requests
        self.assertEqual(cdn_get.path, f"/cdn/{ME_0}")
        self.assertNotIn("authorization", {k.lower() for k in cdn_get.headers}, "credentials must not leave Twilio's host")
        content = self.only_event().content
        self.assertEqual(
            (content["type"], content["mime_type"], content["caption"]), ("media", "image/png", "Here is the receipt")
        )

    def test_a_media_url_on_another_host_is_fetched_without_the_credentials(self) -> None:
        self.cdn_files[ME_0] = (PNG, "image/png")

        self.post(self.mms(NumMedia="1", MediaUrl0=f"{self.cdn.url}/elsewhere/{ME_0}"))

        (cdn_get,) = self.cdn.requests
        self.assertNotIn("authorization", {k.lower() for k in cdn_get.headers})
        self.assertEqual(self.only_event().content["mime_type"], "image/png")

    def test_the_type_is_the_bytes_not_the_label(self) -> None:
        self.twilio.media[ME_0] = (PNG, "image/jpeg")

        self.post(self.mms(NumMedia="1"))

        content = self.only_event().content
        self.assertEqual(content["mime_type"], "image/png")
        self.assertTrue(content["url"].endswith(".png"))

    def test_a_message_is_kept_when_its_media_cannot_be_fetched(self) -> None:
        # ME_1 does not exist (404); ME_0 is too large for the limit.
        self.twilio.media[ME_0] = (JPEG * 10, "image/jpeg")

        with override_settings(ROOMKIT_MAX_UPLOAD_BYTES=len(JPEG)), self.assertLogs("channels_app.providers.twilio", "WARNING"):
            self.post(self.mms())

        event = self.only_event()
        self.assertEqual(
            event.content["parts"],
            [
                {"type": "text", "body": "Here is the receipt"},
                {"type": "text", "body": "[image/jpeg could not be retrieved]"},
                {"type": "text", "body": "[application/pdf could not be retrieved]"},
            ],
        )
        self.assertEqual([e["error"] for e in event.metadata["media_errors"]], ["too_large", "http_404"])
        self.assertEqual(self.stored_files(), [], "nothing is stored of a file over the limit")

    def test_media_refused_for_wrong_credentials_keeps_the_message(self) -> None:
        self.twilio.auth_token = "another-token-the-channel-lacks0"
        self.addCleanup(setattr, self.twilio, "auth_token", TOKEN)
        self.twilio.media[ME_0] = (JPEG, "image/jpeg")

        with self.assertLogs("channels_app.providers.twilio", "WARNING"):
            self.post(self.mms(NumMedia="1"))

        event = self.only_event()
        self.assertEqual(event.metadata["media_errors"][0]["error"], "http_401")
        self.assertEqual(event.content["parts"][1], {"type": "text", "body": "[image/jpeg could not be retrieved]"})

    def test_a_repeated_mms_fetches_nothing_again(self) -> None:
        self.twilio.media[ME_0] = (JPEG, "image/jpeg")
        form = self.mms(NumMedia="1")
        self.post(form)

        self.post(form)

        self.assertEqual(len(self.media_gets()), 1)
        self.assertEqual(len(self.stored_files()), 1)
        self.assertEqual(RoomEvent.objects.count(), 1)

    def test_media_without_text_is_media_content(self) -> None:
        self.twilio.media[ME_0] = (JPEG, "image/jpeg")

        self.post(self.mms(NumMedia="1", Body=""))

        content = self.only_event().content
        self.assertEqual((content["type"], content["mime_type"]), ("media", "image/jpeg"))
        self.assertNotIn("caption", content)


class InboundMediaTests(TwilioMediaTestCase):
    def test_known_types_are_sniffed_from_their_first_bytes(self) -> None:
        cases = {
            PNG: "image/png",
            JPEG: "image/jpeg",
            b"GIF89a\x01\x00": "image/gif",
            b"RIFF\x00\x00\x00\x00WEBPVP8 ": "image/webp",
            PDF: "application/pdf",
            b"\x00\x00\x00\x18ftypmp42\x00\x00": "video/mp4",
            b"\x00\x00\x00\x14ftyp3gp4\x00\x00": "video/3gpp",
            b"\x00\x00\x00\x18ftypheic\x00\x00": "image/heic",
            b"ID3\x03\x00\x00\x00": "audio/mpeg",
            b"OggS\x00\x02": "audio/ogg",
            b"RIFF\x24\x00\x00\x00WAVEfmt ": "audio/wav",
            b"#!AMR\n": "audio/amr",
            b"\xef\xbb\xbfBEGIN:VCARD\r\nVERSION:3.0": "text/vcard",
            b"<html><script>alert(1)</script>": None,
        }
        for head, expected in cases.items():
            with self.subTest(head=head[:12]):
                self.assertEqual(sniff_media_type(head), expected)

    def test_unknown_bytes_are_stored_as_octet_stream(self) -> None:
        media = store_inbound_media(b"<svg onload=alert(1)>", vendor="twilio", declared_type="image/svg+xml")

        self.assertEqual((media.mime_type, media.declared_type), ("application/octet-stream", "image/svg+xml"))
        self.assertTrue(media.name.endswith(".bin"))
        served = open_inbound_media(media.name)
        self.addCleanup(served.file.close)
        self.assertEqual((served.content_type, served.inline), ("application/octet-stream", False))

    def test_only_names_this_module_stores_are_served(self) -> None:
        media = store_inbound_media(PNG, vendor="twilio")
        served = open_inbound_media(media.name)
        self.addCleanup(served.file.close)
        self.assertEqual((served.content_type, served.size, served.inline), ("image/png", len(PNG), True))

        for name in ("inbound/twilio/../../settings.py", "chat/2024/01/" + "a" * 32 + ".png", media.name + ".exe", ""):
            with self.subTest(name=name), self.assertRaises(NotFound):
                open_inbound_media(name)

    def test_refused_urls_and_endless_redirects(self) -> None:
        for url, reason in (("ftp://example.test/a.png", "bad_url"), ("not a url", "bad_url")):
            with self.subTest(url=url), self.assertRaises(MediaFetchError) as caught:
                fetch_inbound_media(url, vendor="twilio")
            self.assertEqual(caught.exception.reason, reason)

        self.twilio.media[ME_0] = (b"", "")
        self.twilio.media_redirect = self.twilio.url + "/2010-04-01/Accounts/" + ACCOUNT + "/Messages/MMx/Media"
        with self.assertRaises(MediaFetchError) as caught:
            fetch_inbound_media(self.twilio.media_url("MMx", ME_0), vendor="twilio", auth=(ACCOUNT, TOKEN))
        self.assertEqual(caught.exception.reason, "too_many_redirects")
