"""The HTTP edge: requests on a fixed pool of threads, webhooks on the lean middleware chain, both servers.

In process, through the project's ASGI application as a server calls it: a
webhook goes through the lean chain (no CSP, no session cookie, security
headers kept) while a browser page keeps the whole chain; a file is streamed
in chunks; many concurrent requests are served by at most
``ROOMKIT_HTTP_THREADS`` threads, each keeping its database connection. In
real server processes: on PostgreSQL 64 concurrent senders open
no more connections than the server has threads (every request used to open
its own, until PostgreSQL refused with "too many clients" and the webhook
answered 500); ``manage.py serve --server uvicorn`` serves webhooks and chat
sockets.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import threading
import time
import unittest
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
from django.core import signals
from django.db import connection
from django.test import TransactionTestCase, override_settings

from channels_app.inbound_media import store_inbound_media
from channels_app.signing import SIGNATURE_HEADER, sign
from channels_app.webchat.sessions import chat_session_start
from roomkit_project.asgi import application, django_asgi_app
from rooms.models import RoomEvent
from tests.concurrency.processes import (
    ORIGIN,
    VENV_BIN,
    child_env,
    free_port,
    quiet_logger,
    start_child,
    start_daphnes,
    wait_for_port,
)
from tests.support import make_channel

try:
    from websockets.sync.client import connect as ws_connect
except ImportError:  # pragma: no cover - listed in requirements.txt
    ws_connect = None

SECRET = "edge-secret"


async def _call(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    """One HTTP request through the ASGI application, as a server makes it: (status, headers, body)."""
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    raw_headers += [(b"host", b"127.0.0.1:8000"), (b"content-length", str(len(body)).encode())]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent_body = False
    out: dict[str, Any] = {"body": b""}

    async def receive() -> dict:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # no disconnect while the request runs
        return {}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            out["headers"] = {k.decode().lower(): v.decode() for k, v in message["headers"]}
        else:
            out["body"] += message.get("body", b"")
            out["chunks"] = out.get("chunks", 0) + 1

    await application(scope, receive, send)
    return out["status"], {**out["headers"], "_chunks": out["chunks"]}, out["body"]


def _signed(text: str, message_id: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"id": message_id, "sender": "+15550100", "text": text}).encode()
    return body, {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, SECRET)}


class PooledHandlerTest(TransactionTestCase):
    def test_a_webhook_takes_the_lean_chain_and_a_page_the_whole_one(self):
        channel = make_channel("edge-hook", secrets={"signing_secret": SECRET})
        body, headers = _signed("hello", "edge-1")
        status, hook_headers, answer = asyncio.run(_call("POST", f"/webhooks/{channel.id}/", body, headers))
        self.assertEqual(status, 200, answer)
        self.assertEqual(json.loads(answer)["seq"], 1)
        self.assertEqual(hook_headers["content-length"], str(len(answer)))
        self.assertEqual(hook_headers["x-content-type-options"], "nosniff")  # SecurityMiddleware is in both chains
        self.assertNotIn("content-security-policy", hook_headers)
        self.assertNotIn("set-cookie", hook_headers)
        self.assertEqual(RoomEvent.objects.get().provider_message_id, "edge-1")

        status, page_headers, _ = asyncio.run(_call("GET", "/admin/login/"))
        self.assertEqual(status, 200)
        self.assertIn("content-security-policy", page_headers)
        self.assertIn("csrftoken", page_headers.get("set-cookie", ""))
        self.assertEqual(page_headers["x-frame-options"], "DENY")

    def test_a_file_is_streamed_in_chunks(self):
        media_root = Path(tempfile.mkdtemp(prefix="rk-edge-media-"))
        self.addCleanup(shutil.rmtree, media_root, True)
        with override_settings(MEDIA_ROOT=str(media_root)):
            data = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 1024  # 256 KB: several 64 KB chunks
            stored = store_inbound_media(data, vendor="twilio")
            status, headers, body = asyncio.run(_call("GET", urlsplit(stored.url).path))
        self.assertEqual(status, 200)
        self.assertEqual(body, data)
        self.assertEqual(headers["content-length"], str(len(data)))
        self.assertGreaterEqual(headers["_chunks"], 4)

    def test_concurrent_requests_share_a_fixed_pool_of_threads_and_their_connections(self):
        seen: dict[int, set[int]] = {}
        lock = threading.Lock()

        def started(**_: Any) -> None:
            with lock:
                seen.setdefault(threading.get_ident(), set())

        def finished(**_: Any) -> None:
            if connection.connection is not None:
                with lock:
                    seen.setdefault(threading.get_ident(), set()).add(id(connection.connection))

        signals.request_started.connect(started, weak=False)
        signals.request_finished.connect(finished, weak=False)
        self.addCleanup(signals.request_started.disconnect, started)
        self.addCleanup(signals.request_finished.disconnect, finished)
        channel = make_channel("edge-pool", secrets={"signing_secret": SECRET})

        async def burst() -> list[int]:
            calls = [_call("POST", f"/webhooks/{channel.id}/", *_signed(f"m{i}", f"pool-{i}")) for i in range(80)]
            return [status for status, _, _ in await asyncio.gather(*calls)]

        self.assertEqual(asyncio.run(burst()), [200] * 80)
        self.assertEqual(RoomEvent.objects.filter(source_channel=channel).count(), 80)
        self.assertLessEqual(len(seen), django_asgi_app.threads)
        # Each thread kept one database connection for all the requests it served.
        self.assertTrue(all(len(conns) <= 1 for conns in seen.values()), seen)


class ServerConnectionsTest(TransactionTestCase):
    @unittest.skipUnless(connection.vendor == "postgresql", "counts PostgreSQL connections")
    def test_a_burst_of_webhooks_opens_no_more_connections_than_threads(self):
        quiet_logger(self, "httpx")
        channel = make_channel("edge-conns", secrets={"signing_secret": SECRET})
        tag = f"rk-edge-{free_port()}"
        database_url = child_env()["DATABASE_URL"] + f"?application_name={tag}"
        [(_, port)] = start_daphnes(self, 1, DATABASE_URL=database_url, ROOMKIT_HTTP_THREADS="4")
        url = f"http://127.0.0.1:{port}/webhooks/{channel.id}/"

        async def burst() -> list[int]:
            """64 senders, each sending 4 webhooks one after another."""
            async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=64)) as client:

                async def sender(k: int) -> list[int]:
                    return [
                        (await client.post(url, content=b, headers=h)).status_code
                        for b, h in (_signed(f"m{k}-{i}", f"c-{k}-{i}") for i in range(4))
                    ]

                return [status for statuses in await asyncio.gather(*(sender(k) for k in range(64))) for status in statuses]

        # The most connections the server held at any moment of the burst, watched from another connection.
        most, done = [0], threading.Event()

        def watch() -> None:
            with psycopg.connect(child_env()["DATABASE_URL"], autocommit=True) as watcher:
                while not done.is_set():
                    query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                    most[0] = max(most[0], watcher.execute(query, [tag]).fetchone()[0])

        watching = threading.Thread(target=watch)
        watching.start()
        try:
            self.assertEqual(asyncio.run(burst()), [200] * 256)
        finally:
            done.set()
            watching.join()
        self.assertGreaterEqual(most[0], 1)
        self.assertLessEqual(most[0], 4)
        self.assertEqual(RoomEvent.objects.filter(source_channel=channel).count(), 256)


@unittest.skipIf(ws_connect is None, "the 'websockets' library is not installed (requirements.txt)")
class UvicornServeTest(TransactionTestCase):
    def test_serve_with_uvicorn_takes_webhooks_and_chat_sockets(self):
        quiet_logger(self, "httpx")
        port = free_port()
        server = start_child(
            self,
            [str(VENV_BIN / "python"), "manage.py", "serve", "--server", "uvicorn", "--no-workers", "--port", str(port)],
            child_env(),
            name=f"uvicorn-{port}",
        )
        wait_for_port(server, port, deadline_s=60)
        channel = make_channel("edge-uvicorn", secrets={"signing_secret": SECRET})
        body, headers = _signed("over uvicorn", "uv-1")
        answer = httpx.post(f"http://127.0.0.1:{port}/webhooks/{channel.id}/", content=body, headers=headers, timeout=30)
        self.assertEqual(answer.status_code, 200, answer.text)
        self.assertEqual(RoomEvent.objects.get(source_channel=channel).content["body"], "over uvicorn")

        session = chat_session_start(display_name="Ann", open_now=True)
        ws = ws_connect(f"ws://127.0.0.1:{port}/ws/chat/?token={session.token}", origin=ORIGIN, open_timeout=20)
        self.addCleanup(ws.close)
        ws.send(json.dumps({"type": "message", "text": "hi", "client_msg_id": "c1"}))
        deadline = time.monotonic() + 15
        while True:
            frame = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if frame.get("type") == "ack":
                break
        self.assertEqual((frame["client_msg_id"], frame["seq"]), ("c1", 1))
