"""Request guards that must run before any view reads the body."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from csp.middleware import CSPMiddleware, PolicyParts
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase

# Room for the multipart boundary, part headers and a short caption field
# around an uploaded file.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def body_limit_for(path: str) -> int:
    """The largest body accepted on ``path``: the general limit, or the upload limit on upload endpoints."""
    limit = settings.ROOMKIT_MAX_BODY_BYTES
    if path in settings.ROOMKIT_UPLOAD_PATHS:
        limit = max(limit, settings.ROOMKIT_MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD_BYTES)
    return limit


class BodySizeLimitMiddleware:
    """Refuse an oversize body with 413 JSON before anything reads it.

    Django would raise RequestDataTooBig deep inside a view; answering here
    keeps the contract's error shape and never buffers the body. Upload
    endpoints (``ROOMKIT_UPLOAD_PATHS``) get the upload limit instead; the
    view checks the file itself against ``ROOMKIT_MAX_UPLOAD_BYTES``.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = body_limit_for(request.path)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _error(400, "bad_content_length", "Content-Length is not a number")
        if length > limit:
            return _error(413, "body_too_large", f"request body exceeds {limit} bytes")
        return self.get_response(request)


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


class SitePolicyMiddleware(CSPMiddleware):
    """django-csp's policy (``CONTENT_SECURITY_POLICY``), and this host's WebSockets for pages that open them.

    CSP Level 2 browsers do not count ``ws://``/``wss://`` on the page's own
    host as ``'self'``: the console's live updates need them named. A view that
    sets its own policy (the chat page, media files) keeps it.
    """

    def get_policy_parts(self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        try:
            host = request.get_host()
        except DisallowedHost:
            return parts
        sockets = [f"ws://{host}", f"wss://{host}"]
        parts.update = {**(parts.update or {}), "connect-src": [*(parts.update or {}).get("connect-src", []), *sockets]}
        return parts


ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


class BodySizeLimitASGI:
    """413 JSON for an HTTP body over its path's limit, counted while it arrives.

    ``BodySizeLimitMiddleware`` trusts Content-Length, which a chunked request
    does not carry: Django's ASGI handler would spool the whole body to a
    temporary file first, then fail deep inside a view (``RequestDataTooBig``,
    a 400 HTML page). Here the body's bytes are counted as the server hands
    them over; past the limit Django is told the client went away (it drops
    what it spooled and answers nothing) and the caller gets the contract's
    413. A declared Content-Length over the limit is refused before any of
    the body is read.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict]], send: Callable[[dict], Awaitable[None]]
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _send_413(send, limit)
            return
        received = 0
        exceeded = False

        async def counting_receive() -> dict:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, counting_receive, send)
        if exceeded:
            await _send_413(send, limit)


def _content_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # BodySizeLimitMiddleware answers 400 for it
    return None


async def _send_413(send: Callable[[dict], Awaitable[None]], limit: int) -> None:
    body = json.dumps({"error": {"code": "body_too_large", "message": f"request body exceeds {limit} bytes"}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                # The rest of the body is not read: the connection cannot carry another request.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
