"""Request guards that must run before any view reads the body."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse


class BodySizeLimitMiddleware:
    """Refuse an oversize body with 413 JSON before anything reads it.

    Django would raise RequestDataTooBig deep inside a view; answering here
    keeps the contract's error shape and never buffers the body.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.ROOMKIT_MAX_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _error(400, "bad_content_length", "Content-Length is not a number")
        if length > limit:
            return _error(413, "body_too_large", f"request body exceeds {limit} bytes")
        return self.get_response(request)


def _error(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)
