"""Chat image uploads ``POST /api/v1/chat/uploads`` and the media view ``GET /media/…``.

Everything goes through HTTP with the Django test client, the chat token comes
from a real session, and the files land in a temporary MEDIA_ROOT that is
inspected directly: a refused upload must leave nothing behind.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
import zlib
from pathlib import Path

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import TestCase, override_settings

from channels_app.webchat.sessions import chat_session_join, chat_session_start
from channels_app.webchat.tokens import chat_token_issue
from rooms.errors import Conflict, NotFound
from rooms.models import ChannelBinding, Participant
from rooms.services import room_close

URL = "/api/v1/chat/uploads"


def png_bytes(width: int = 3, height: int = 2, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64 + b"\xff\xd9"
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00"
HTML = b"<html><script>alert(document.cookie)</script></html>"


class UploadTestCase(TestCase):
    def setUp(self) -> None:
        self.media_root = Path(tempfile.mkdtemp(prefix="rk-media-test-"))
        self.addCleanup(shutil.rmtree, self.media_root, ignore_errors=True)
        settings_override = override_settings(MEDIA_ROOT=str(self.media_root), PUBLIC_BASE_URL="http://testserver")
        settings_override.enable()
        self.addCleanup(settings_override.disable)
        self.session = chat_session_start(display_name="Ann", open_now=True)
        self.auth = {"Authorization": f"Bearer {self.session.token}"}

    def upload(self, content: bytes, name: str = "photo.png", content_type: str = "image/png", headers=None):
        f = SimpleUploadedFile(name, content, content_type=content_type)
        return self.client.post(URL, {"file": f}, headers=self.auth if headers is None else headers)

    def stored_files(self) -> list[Path]:
        return [p for p in self.media_root.rglob("*") if p.is_file()]

    def assertError(self, response, status: int, code: str) -> None:
        self.assertEqual(response.status_code, status, response.content)
        self.assertTrue(response["Content-Type"].startswith("application/json"), response["Content-Type"])
        body = response.json()
        self.assertEqual(body["error"]["code"], code, body)
        self.assertTrue(body["error"]["message"])

    def assertNothingStored(self) -> None:
        self.assertEqual(self.stored_files(), [])


class AcceptedUploadTests(UploadTestCase):
    def test_png_is_stored_and_described(self) -> None:
        data = png_bytes()
        r = self.upload(data, name="holiday photo.png")

        self.assertEqual(r.status_code, 201, r.content)
        body = r.json()
        self.assertEqual(set(body), {"url", "mime_type", "filename", "size"})
        self.assertEqual((body["mime_type"], body["filename"], body["size"]), ("image/png", "holiday photo.png", len(data)))
        self.assertRegex(body["url"], r"^http://testserver/media/chat/\d{4}/\d{2}/[0-9a-f]{32}\.png$")
        [stored] = self.stored_files()
        self.assertEqual(stored.read_bytes(), data)
        self.assertEqual(stored.suffix, ".png")

    def test_every_accepted_type_by_its_bytes(self) -> None:
        for content, name, declared, expected, ext in (
            (JPEG, "a.jpg", "image/jpeg", "image/jpeg", ".jpg"),
            (GIF, "a.gif", "image/gif", "image/gif", ".gif"),
            (WEBP, "a.webp", "image/webp", "image/webp", ".webp"),
            # No claim at all: the bytes decide.
            (png_bytes(), "blob", "application/octet-stream", "image/png", ".png"),
        ):
            with self.subTest(expected=expected, declared=declared):
                r = self.upload(content, name=name, content_type=declared)
                self.assertEqual(r.status_code, 201, r.content)
                self.assertEqual(r.json()["mime_type"], expected)
                self.assertTrue(r.json()["url"].endswith(ext))

    def test_the_filename_is_cleaned(self) -> None:
        r = self.upload(png_bytes(), name="..\\..\\evil\x07name.png")
        self.assertEqual(r.status_code, 201, r.content)
        self.assertEqual(r.json()["filename"], "evilname.png")
        [stored] = self.stored_files()
        self.assertTrue(stored.resolve().is_relative_to(self.media_root.resolve()))

    def test_a_file_above_the_general_body_limit_but_within_the_upload_limit(self) -> None:
        # The body middleware's 1 MiB limit does not apply to the upload path...
        big = png_bytes() + b"\x00" * 30_000
        with override_settings(ROOMKIT_MAX_BODY_BYTES=10_000, ROOMKIT_MAX_UPLOAD_BYTES=100_000):
            r = self.upload(big)
            self.assertEqual(r.status_code, 201, r.content)
            self.assertEqual(r.json()["size"], len(big))
            # ...and still applies everywhere else.
            other = self.client.post("/api/v1/chat/sessions", data=b"{" + b" " * 20_000 + b"}", content_type="application/json")
            self.assertError(other, 413, "body_too_large")

    def test_a_joined_participant_may_upload_too(self) -> None:
        bob = chat_session_join(self.session.room_id, display_name="Bob")
        r = self.upload(png_bytes(), headers={"Authorization": f"Bearer {bob.token}"})
        self.assertEqual(r.status_code, 201, r.content)


class RefusedUploadTests(UploadTestCase):
    def test_a_type_that_is_not_an_image(self) -> None:
        r = self.upload(b"just some words\n", name="notes.txt", content_type="text/plain")
        self.assertError(r, 415, "unsupported_file_type")
        self.assertNothingStored()

    def test_svg_is_refused(self) -> None:
        svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
        r = self.upload(svg, name="logo.svg", content_type="image/svg+xml")
        self.assertError(r, 415, "unsupported_file_type")
        self.assertNothingStored()

    def test_a_spoofed_type_is_caught_by_its_bytes(self) -> None:
        r = self.upload(HTML, name="innocent.png", content_type="image/png")
        self.assertError(r, 415, "unsupported_file_type")
        self.assertNothingStored()

    def test_declared_type_that_contradicts_the_bytes(self) -> None:
        for declared in ("image/jpeg", "text/html"):
            with self.subTest(declared=declared):
                r = self.upload(png_bytes(), name="x.jpg", content_type=declared)
                self.assertError(r, 415, "type_mismatch")
        self.assertNothingStored()

    def test_too_big(self) -> None:
        with override_settings(ROOMKIT_MAX_UPLOAD_BYTES=1000):
            r = self.upload(png_bytes() + b"\x00" * 2000)
        self.assertError(r, 413, "file_too_large")
        self.assertNothingStored()

    def test_a_body_far_above_the_upload_limit_is_refused_before_it_is_read(self) -> None:
        with override_settings(ROOMKIT_MAX_BODY_BYTES=10_000, ROOMKIT_MAX_UPLOAD_BYTES=1000):
            r = self.client.generic(
                "POST",
                URL,
                data=b"x" * 200_000,
                content_type="multipart/form-data; boundary=zzz",
                headers=self.auth,
            )
        self.assertError(r, 413, "body_too_large")
        self.assertNothingStored()

    def test_bad_missing_or_foreign_tokens(self) -> None:
        for label, headers in (
            ("none", {}),
            ("not a token", {"Authorization": "Bearer not-a-token"}),
            ("not bearer", {"Authorization": f"Basic {self.session.token}"}),
            ("tampered", {"Authorization": f"Bearer {self.session.token[:-2]}xx"}),
            (
                "participant of another room",
                {
                    "Authorization": "Bearer "
                    + chat_token_issue(
                        room_id=self.session.room_id,
                        participant_id=chat_session_start(display_name="Eve", open_now=True).participant_id,
                    )
                },
            ),
        ):
            with self.subTest(label):
                r = self.upload(png_bytes(), headers=headers)
                self.assertError(r, 401, "unauthorized")
        self.assertNothingStored()

    def test_an_expired_token(self) -> None:
        with override_settings(ROOMKIT_CHAT_TOKEN_MAX_AGE=-1):
            r = self.upload(png_bytes())
        self.assertError(r, 401, "unauthorized")
        self.assertNothingStored()

    def test_a_closed_room(self) -> None:
        room_close(room_id=self.session.room_id)
        r = self.upload(png_bytes())
        self.assertError(r, 409, "room_closed")
        self.assertNothingStored()

    def test_not_multipart(self) -> None:
        r = self.client.post(URL, data=b'{"file": "x"}', content_type="application/json", headers=self.auth)
        self.assertError(r, 415, "unsupported_media_type")
        self.assertNothingStored()

    def test_missing_field_and_empty_file(self) -> None:
        r = self.client.post(URL, {"other": "x"}, headers=self.auth)
        self.assertError(r, 400, "missing_file")
        r = self.upload(b"", name="empty.png")
        self.assertError(r, 400, "empty_file")
        self.assertNothingStored()

    def test_malformed_multipart(self) -> None:
        r = self.client.generic("POST", URL, data=b"--x\r\nnonsense", content_type="multipart/form-data", headers=self.auth)
        self.assertError(r, 400, "malformed_multipart")
        self.assertNothingStored()

    def test_only_post(self) -> None:
        r = self.client.get(URL, headers=self.auth)
        self.assertEqual(r.status_code, 405)


class MediaViewTests(UploadTestCase):
    def test_an_uploaded_image_is_served_safely(self) -> None:
        data = png_bytes()
        url = self.upload(data).json()["url"]
        path = url.removeprefix("http://testserver")

        r = self.client.get(path)
        self.assertEqual(r.status_code, 200)
        self.assertEqual(b"".join(r.streaming_content), data)
        self.assertEqual(r["Content-Type"], "image/png")
        self.assertEqual(r["X-Content-Type-Options"], "nosniff")
        self.assertEqual(r["Content-Disposition"], "inline")
        self.assertEqual(r["Content-Length"], str(len(data)))
        self.assertIn("sandbox", r["Content-Security-Policy"])
        self.assertIn("default-src 'none'", r["Content-Security-Policy"])

        head = self.client.head(path)
        self.assertEqual(head.status_code, 200)
        self.assertEqual(head["Content-Type"], "image/png")
        self.assertEqual(head.content, b"")

    def test_each_type_is_served_as_stored(self) -> None:
        for content, declared in ((JPEG, "image/jpeg"), (GIF, "image/gif"), (WEBP, "image/webp")):
            with self.subTest(declared):
                path = self.upload(content, content_type=declared).json()["url"].removeprefix("http://testserver")
                self.assertEqual(self.client.get(path)["Content-Type"], declared)

    def test_nothing_else_under_media_root_is_served(self) -> None:
        (self.media_root / "chat").mkdir()
        (self.media_root / "secret.txt").write_text("secret")
        (self.media_root / "chat" / "page.html").write_text("<script>alert(1)</script>")
        for path in (
            "/media/secret.txt",
            "/media/chat/page.html",
            "/media/../roomkit_project/settings.py",
            "/media/chat/2026/01/../../../secret.txt",
            "/media/chat/2026/01/" + "0" * 32 + ".png",  # well-formed, never stored
            "/media/",
        ):
            with self.subTest(path):
                r = self.client.get(path)
                self.assertEqual(r.status_code, 404, path)
                if path != "/media/":
                    self.assertEqual(r.json()["error"]["code"], "not_found")

    def test_only_get_and_head(self) -> None:
        path = self.upload(png_bytes()).json()["url"].removeprefix("http://testserver")
        r = self.client.post(path)
        self.assertEqual(r.status_code, 405)
        self.assertEqual(r.json()["error"]["code"], "method_not_allowed")


class ChatPageTests(TestCase):
    def test_the_page_and_its_assets(self) -> None:
        r = self.client.get("/")
        self.assertEqual(r.status_code, 200)
        csp = r["Content-Security-Policy"]
        self.assertIn("script-src 'self'", csp)
        self.assertNotIn("unsafe-inline", csp.split("script-src", 1)[1].split(";", 1)[0])
        html = r.content.decode()
        self.assertIn('src="/static/webchat/chat.js"', html)
        self.assertIn('data-max-upload-bytes="5242880"', html)
        for asset in ("/static/webchat/people.js", "/static/webchat/chat.js", "/static/webchat/chat.css"):
            with self.subTest(asset):
                got = self.client.get(asset)
                self.assertEqual(got.status_code, 200)

    def test_the_upload_endpoint_is_in_the_schema(self) -> None:
        schema = self.client.get("/api/v1/openapi.json").json()
        op = schema["paths"]["/api/v1/chat/uploads"]["post"]
        self.assertIn("multipart/form-data", op["requestBody"]["content"])


class JoinTests(TestCase):
    def test_a_second_visitor_joins_the_room(self) -> None:
        first = chat_session_start(display_name="Ann", open_now=True)
        second = chat_session_join(first.room_id, display_name="Bob")
        self.assertEqual(second.room_id, first.room_id)
        bob = Participant.objects.get(pk=second.participant_id)
        self.assertEqual((bob.display_name, bob.room_id, bob.address), ("Bob", first.room_id, bob.id))
        binding = ChannelBinding.objects.get(room_id=first.room_id, address=bob.id)
        self.assertEqual((binding.channel_id, binding.participant_id), ("webchat", bob.id))

    def test_unknown_or_closed_room(self) -> None:
        with self.assertRaises(NotFound):
            chat_session_join("no-such-room")
        first = chat_session_start(open_now=True)
        room_close(room_id=first.room_id)
        with self.assertRaises(Conflict):
            chat_session_join(first.room_id)
