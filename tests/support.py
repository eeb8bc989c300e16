"""Shared test helpers: channel factories, signed webhook posts, a fake HTTP server.

The fake server is a real HTTP server on 127.0.0.1 (a thread), so outbound
adapters and vendor SDKs run their own code against it.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs

from django.test import Client

from channels_app.signing import SIGNATURE_HEADER, sign
from rooms.enums import ChannelCategory
from rooms.models import Channel
from rooms.selectors import clear_channel_cache


def make_channel(
    channel_id: str,
    *,
    channel_type: str = "webhook",
    provider: str = "http",
    config: dict | None = None,
    secrets: dict[str, str] | None = None,
    category: str = ChannelCategory.TRANSPORT,
    **fields: Any,
) -> Channel:
    channel = Channel(
        id=channel_id, channel_type=channel_type, provider=provider, config=config or {}, category=category, **fields
    )
    if secrets:
        channel.set_secrets(secrets)
    channel.save()
    clear_channel_cache()
    return channel


def post_signed(client: Client, path: str, payload: Any, secret: str | None, **extra: Any):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {}
    if secret is not None:
        headers["HTTP_" + SIGNATURE_HEADER.upper().replace("-", "_")] = sign(body, secret)
    return client.post(path, data=body, content_type=extra.pop("content_type", "application/json"), **headers, **extra)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


class LocalHTTPServer:
    """A real HTTP server on 127.0.0.1, in a thread, for a ``with`` block: the base of every fake vendor.

    A subclass builds its request handler and calls ``_listen(handler)`` in
    ``__init__``; ``url`` is where to point the code under test.
    """

    def _listen(
        self, handler: type[BaseHTTPRequestHandler], server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer
    ) -> None:
        self._server = server_class(("127.0.0.1", 0), handler)
        # Handler threads of a connection left open by a client do not hold up the test's exit.
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _listen_answering(self) -> None:
        """Listen with a handler that records each request and answers with ``self._answer(request)`` (the subclass's).

        ``_answer`` takes a ``RecordedRequest`` and returns ``(status, body,
        headers)``: the body as bytes, or anything JSON encodes; the headers as
        a dict, or only the Content-Type as a string (JSON when not said). It
        may return None for a lost answer: the request was taken, the
        connection drops. Kept-alive HTTP/1.1, as a vendor's API serves.
        """
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without this, Nagle and the client's delayed
                # ACK hold every kept-alive answer back ~40 ms (a fake that slow would hide our own cost).
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                headers = {k.lower(): v for k, v in self.headers.items()}
                answer = outer._answer(RecordedRequest(self.command, self.path, headers, self.rfile.read(length)))
                if answer is None:
                    self.close_connection = True
                    return
                status, body, extra = answer
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                sent = {"Content-Type": extra} if isinstance(extra, str) else {"Content-Type": "application/json", **extra}
                self.send_response(status)
                for k, v in sent.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self._listen(_Handler)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class FakeHTTPServer(LocalHTTPServer):
    """A local HTTP server that records requests and answers from a script.

    ``responses`` is consumed in order (status, body, headers); when it runs out
    the ``default`` answer is used. ``handler`` may compute answers instead.
    """

    default: tuple[int, Any, dict[str, str]] = (200, {"id": "fake-1"}, {})
    responses: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    handler: Callable[[RecordedRequest], tuple[int, Any, dict[str, str]]] | None = None
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                req = RecordedRequest(self.command, self.path, {k: v for k, v in self.headers.items()}, self.rfile.read(length))
                outer.requests.append(req)
                if outer.handler is not None:
                    status, body, headers = outer.handler(req)
                elif outer.responses:
                    status, body, headers = outer.responses.pop(0)
                else:
                    status, body, headers = outer.default
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self._listen(_Handler)
