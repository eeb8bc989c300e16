"""Request guards that must run before any view reads the body."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

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
