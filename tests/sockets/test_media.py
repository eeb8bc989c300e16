"""Media messages on the chat socket: an image uploaded to this site, with an optional caption.

The page uploads through ``POST /api/v1/chat/uploads`` and sends the ``media``
object it got back; only files this site stored under ``MEDIA_URL`` are
accepted, and the stored type and size win over what the client claims.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings

from rooms.models import RoomEvent
from tests.api.test_uploads import png_bytes
from tests.sockets.helpers import drain, event_seqs, is_event, is_type, join_room, next_frame
from tests.sockets.test_chat_consumer import ChatSocketTestBase


class MediaMessageTest(ChatSocketTestBase):
    def setUp(self) -> None:
        super().setUp()
        self.media_root = Path(tempfile.mkdtemp(prefix="rk-media-sock-"))
        self.addCleanup(shutil.rmtree, self.media_root, ignore_errors=True)
        override = override_settings(MEDIA_ROOT=str(self.media_root))
        override.enable()
        self.addCleanup(override.disable)

    async def upload(self, token: str, data: bytes, name: str = "cat.png") -> dict:
        def post():
            f = SimpleUploadedFile(name, data, content_type="image/png")
            return Client().post("/api/v1/chat/uploads", {"file": f}, headers={"Authorization": f"Bearer {token}"})

        response = await sync_to_async(post)()
        self.assertEqual(response.status_code, 201, response.content)
        return response.json()

    async def test_uploaded_image_is_posted_with_its_caption(self):
        session = await self.start_session("Ann")
        try:
            ann, _ = await self.sockets.connect(session["token"])
            _bob_id, bob_token = await join_room(session["room_id"], "Bob")
            bob, _ = await self.sockets.connect(bob_token)
            data = png_bytes()
            media = await self.upload(session["token"], data)
            self.assertTrue(media["url"].startswith("http://127.0.0.1:8000/media/"), media)

            await ann.send_json_to({"type": "message", "media": media, "text": "my cat", "client_msg_id": "img-1"})
            ack, _ = await next_frame(ann, is_type("ack"))
            self.assertEqual((ack["client_msg_id"], ack["seq"], ack["status"]), ("img-1", 1, "stored"))
            frame, _ = await next_frame(bob, is_event(1))
            expected = {
                "type": "media",
                "url": media["url"],
                "mime_type": "image/png",
                "filename": "cat.png",
                "size": len(data),
                "caption": "my cat",
            }
            self.assertEqual(frame["event"]["content"], expected)
            stored = await sync_to_async(RoomEvent.objects.get)(room_id=session["room_id"])
            self.assertEqual(stored.content, expected)

            # Without a caption; the client's size claim is replaced by the stored size.
            await ann.send_json_to({"type": "message", "media": {**media, "size": 1}, "client_msg_id": "img-2"})
            ack, _ = await next_frame(ann, is_type("ack"))
            self.assertEqual((ack["seq"], ack["status"]), (2, "stored"))
            frame, _ = await next_frame(bob, is_event(2))
            self.assertEqual(frame["event"]["content"]["size"], len(data))
            self.assertNotIn("caption", frame["event"]["content"])
            # Same client_msg_id again: the first result.
            await ann.send_json_to({"type": "message", "media": media, "client_msg_id": "img-2"})
            ack, _ = await next_frame(ann, is_type("ack"))
            self.assertEqual((ack["seq"], ack["status"]), (2, "duplicate"))
        finally:
            await self.sockets.close_all()

    async def test_media_from_anywhere_else_is_refused(self):
        session = await self.start_session("Ann")
        try:
            ann, _ = await self.sockets.connect(session["token"])
            media = await self.upload(session["token"], png_bytes())
            base, name = media["url"].rsplit("/media/", 1)
            (self.media_root / "secret.png").write_bytes(png_bytes())
            refused = {
                "another site": {**media, "url": "https://evil.example/media/" + name},
                "protocol-relative": {**media, "url": "//evil.example/media/" + name},
                "javascript": {**media, "url": "javascript:alert(1)"},
                "outside media": {**media, "url": base + "/admin/"},
                "traversal": {**media, "url": f"{base}/media/chat/../../settings.py"},
                "encoded traversal": {**media, "url": f"{base}/media/chat/%2e%2e/secret.png"},
                "no such file": {**media, "url": f"{base}/media/chat/2020/01/{'0' * 32}.png"},
                "query string": {**media, "url": media["url"] + "?x=1"},
                "claimed type differs": {**media, "mime_type": "text/html"},
                "unknown field": {**media, "onload": "alert(1)"},
                "not an object": "https://evil.example/x.png",
                "no url": {"mime_type": "image/png"},
            }
            for label, bad in refused.items():
                with self.subTest(label):
                    await ann.send_json_to({"type": "message", "media": bad, "client_msg_id": f"bad-{label}"})
                    err, _ = await next_frame(ann, is_type("error"))
                    self.assertEqual((err["code"], err["client_msg_id"]), ("invalid_media", f"bad-{label}"), err)
            # A site-relative URL under MEDIA_URL is this site's file too.
            relative = {**media, "url": "/media/" + name}
            await ann.send_json_to({"type": "message", "media": relative, "client_msg_id": "ok"})
            ack, _ = await next_frame(ann, is_type("ack"))
            self.assertEqual(ack["seq"], 1)
            frames = await drain(ann)
            self.assertEqual(event_seqs(frames), [1])
            self.assertEqual(await self.count_events(room_id=session["room_id"]), 1)
        finally:
            await self.sockets.close_all()
