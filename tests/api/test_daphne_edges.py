"""Request bodies over real HTTP against Daphne, where the test client cannot go.

Chunked bodies (``Transfer-Encoding: chunked``, no Content-Length) over the
limit, and multipart bodies that Twisted, under Daphne, used to refuse with an
empty 400 before our code ran: each must get the contract's JSON error and
store nothing; a chunked body within the limit must work as any other.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
from asgiref.sync import async_to_sync
from django.test import SimpleTestCase, TransactionTestCase, override_settings

from channels_app.signing import SIGNATURE_HEADER, sign
from channels_app.webchat.sessions import chat_session_start
from roomkit_project.asgi import application
from rooms.models import RoomEvent
from rooms.services import room_create
from tests.api.test_api import new_token
from tests.concurrency.processes import quiet_logger, start_daphnes
from tests.support import make_channel

LIMIT = 64 * 1024  # ROOMKIT_MAX_BODY_BYTES of the server under test
UPLOAD_LIMIT = 128 * 1024  # its ROOMKIT_MAX_UPLOAD_BYTES


def chunked(body: bytes, piece: int = 16 * 1024) -> Iterator[bytes]:
    """``body`` as an iterator: httpx sends it chunked, without Content-Length."""
    for start in range(0, len(body), piece):
        yield body[start : start + piece]


def json_of(response: httpx.Response) -> dict:
    assert response.headers["content-type"].startswith("application/json"), (response.status_code, response.text[:300])
    return response.json()


class DaphneBodyTests(TransactionTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.media_root = tempfile.mkdtemp(prefix="rk-daphne-media-")

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.media_root, ignore_errors=True)
        super().tearDownClass()

    def setUp(self) -> None:
        quiet_logger(self, "httpx")
        [(_, port)] = start_daphnes(
            self,
            1,
            ROOMKIT_MAX_BODY_BYTES=str(LIMIT),
            ROOMKIT_MAX_UPLOAD_BYTES=str(UPLOAD_LIMIT),
            MEDIA_ROOT=self.media_root,
            PUBLIC_BASE_URL="http://127.0.0.1:8000",
        )
        self.base = f"http://127.0.0.1:{port}"
        self.http = httpx.Client(base_url=self.base, timeout=20)
        self.addCleanup(self.http.close)

    def post(self, path: str, body: bytes | Iterator[bytes], headers: dict[str, str]) -> httpx.Response:
        return self.http.post(path, content=body, headers=headers)

    def test_chunked_api_body_over_the_limit_is_413_json_and_stores_nothing(self) -> None:
        room = room_create(name="api")
        auth = {"Authorization": f"Bearer {new_token()}", "Content-Type": "application/json"}
        path = f"/api/v1/rooms/{room.id}/messages"
        big = json.dumps({"text": "x" * (LIMIT + 10)}).encode()

        r = self.post(path, chunked(big), auth)
        self.assertEqual(r.status_code, 413, r.text)
        self.assertEqual(json_of(r)["error"]["code"], "body_too_large")
        self.assertNotIn("content-length", r.request.headers)
        self.assertEqual(RoomEvent.objects.filter(room_id=room.id).count(), 0)

        # Declared up front: refused before the body is read.
        r = self.post(path, big, auth)
        self.assertEqual((r.status_code, json_of(r)["error"]["code"]), (413, "body_too_large"))

        # Within the limit, a chunked body is a body like any other.
        r = self.post(path, chunked(json.dumps({"text": "y" * 1000, "idempotency_key": "k1"}).encode(), 100), auth)
        self.assertEqual(r.status_code, 201, r.text)
        self.assertEqual(json_of(r)["seq"], 1)
        self.assertEqual(RoomEvent.objects.get(room_id=room.id).content["body"], "y" * 1000)

    def test_chunked_webhook_body_over_the_limit_is_413_json(self) -> None:
        make_channel("crm-chunked", secrets={"signing_secret": "s3"})
        big = json.dumps({"id": "m1", "sender": "alice", "text": "x" * (LIMIT + 10)}).encode()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(big, "s3")}

        r = self.post("/webhooks/crm-chunked/", chunked(big), headers)
        self.assertEqual((r.status_code, json_of(r)["error"]["code"]), (413, "body_too_large"))
        self.assertFalse(RoomEvent.objects.exists())

        small = json.dumps({"id": "m2", "sender": "alice", "text": "hello"}).encode()
        headers[SIGNATURE_HEADER] = sign(small, "s3")
        r = self.post("/webhooks/crm-chunked/", chunked(small, 7), headers)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(RoomEvent.objects.get().content["body"], "hello")

    def test_uploads_malformed_or_chunked_over_the_upload_limit(self) -> None:
        session = chat_session_start(display_name="Ann", open_now=True)
        auth = {"Authorization": f"Bearer {session.token}"}

        # Bodies Twisted's own multipart parser refused with an empty 400.
        for body in (b"garbage", b"--zzz--\r\n", b"--zzz\r\nnonsense"):
            with self.subTest(body=body):
                r = self.post("/api/v1/chat/uploads", body, {**auth, "Content-Type": "multipart/form-data; boundary=zzz"})
                self.assertEqual((r.status_code, json_of(r)["error"]["code"]), (400, "malformed_multipart"))
        r = self.post("/api/v1/chat/uploads", b"x", {**auth, "Content-Type": "multipart/form-data"})
        self.assertEqual((r.status_code, json_of(r)["error"]["code"]), (400, "malformed_multipart"))

        # A picture larger than the whole upload allowance, chunked: refused while it arrives.
        boundary = "b0undary"
        part = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\nContent-Type: image/png\r\n\r\n'
        ).encode()
        body = part + b"\x89PNG\r\n\x1a\n" + b"\x00" * (UPLOAD_LIMIT + 70 * 1024) + f"\r\n--{boundary}--\r\n".encode()
        r = self.post(
            "/api/v1/chat/uploads", chunked(body), {**auth, "Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        self.assertEqual((r.status_code, json_of(r)["error"]["code"]), (413, "body_too_large"))
        self.assertEqual([p for p in Path(self.media_root).rglob("*") if p.is_file()], [])


class ASGIBodyLimitTests(SimpleTestCase):
    """The ASGI guard itself: it stops reading a body without Content-Length once it passes the limit."""

    def test_reading_stops_at_the_limit_and_the_answer_is_413_json(self) -> None:
        chunks = [b"x" * 1024] * 64  # 64 KiB, sent in 1 KiB messages with no Content-Length
        consumed: list[int] = []
        sent: list[dict] = []

        async def receive() -> dict:
            consumed.append(len(consumed))
            return {"type": "http.request", "body": chunks[len(consumed) - 1], "more_body": len(consumed) < len(chunks)}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/api/v1/rooms/r1/messages",
            "raw_path": b"/api/v1/rooms/r1/messages",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
            "client": ("127.0.0.1", 5000),
            "server": ("127.0.0.1", 8000),
        }
        with override_settings(ROOMKIT_MAX_BODY_BYTES=10 * 1024):
            async_to_sync(application)(scope, receive, send)
        self.assertEqual(len(consumed), 11)  # the 11th KiB passed the limit: nothing more was read
        start, body = sent
        self.assertEqual(start["status"], 413)
        self.assertIn((b"content-type", b"application/json"), start["headers"])
        self.assertEqual(json.loads(body["body"])["error"]["code"], "body_too_large")
