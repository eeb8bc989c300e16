"""JSON requests and error responses in the contract's shape, for every HTTP edge."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpRequest, HttpResponse, JsonResponse

from rooms.content.storable import find_unstorable
from rooms.errors import InvalidInput, PayloadTooLarge, RoomKitError, UnsupportedMediaType

logger = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def json_errors(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Turn a RoomKitError raised by a view or service into its 4xx JSON answer."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except RoomKitError as exc:
            return JsonResponse(exc.as_dict(), status=exc.status, headers=exc.headers)

    return wrapper


def allow_methods(*methods: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Like Django's ``require_http_methods``, but the 405 is the contract's JSON error."""
    allowed = [m.upper() for m in methods]

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in allowed:
                response = error_response(405, "method_not_allowed", f"use {' or '.join(allowed)}")
                response["Allow"] = ", ".join(allowed)
                return response
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def json_object_body(request: HttpRequest, *, refuse_unstorable_text: bool = True) -> dict[str, Any]:
    """The request's JSON object, or a 415/400 naming what is wrong (never a 500).

    ``refuse_unstorable_text``: any string in the body with a NUL or an
    unpaired surrogate is a 400 ``invalid_text``. A caller that validates
    every field it keeps against a schema that says so (the REST API) turns it
    off, so fields it ignores are ignored, as its schema promises.
    """
    ctype = (request.content_type or "").lower()
    if ctype != "application/json":
        raise UnsupportedMediaType("expected Content-Type: application/json")
    body = request.body
    if len(body) > settings.ROOMKIT_MAX_BODY_BYTES:
        # A chunked upload carries no Content-Length for the middleware to check.
        raise PayloadTooLarge(f"request body exceeds {settings.ROOMKIT_MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        # RecursionError: a deeply nested body exhausts the decoder's stack; it is
        # still the caller's malformed input, not our failure.
        raise InvalidInput("body is not valid JSON", code="malformed_json") from None
    if not isinstance(data, dict):
        raise InvalidInput("body must be a JSON object", code="malformed_json")
    if refuse_unstorable_text:
        _refuse_unstorable_text(data)
    return data


def _refuse_unstorable_text(data: Any) -> None:
    """NUL and unpaired surrogates are valid JSON escapes, but PostgreSQL stores neither (``rooms.content.storable``).

    Refused here as the caller's error, on every database, instead of failing
    as a 500 at the INSERT.
    """
    if find_unstorable(data) is not None:
        raise InvalidInput("body contains a NUL character or an unpaired surrogate", code="invalid_text")


class SizeLimitedUploadHandler(FileUploadHandler):
    """Skip any uploaded file larger than ``limit`` bytes while it is parsed.

    Placed first in ``request.upload_handlers`` it drops an oversize file
    before the next handlers keep it (in memory or a temporary file), also when
    the request carried no Content-Length for the middleware to check;
    ``exceeded`` tells the view to answer 413 instead of "missing file".
    """

    def __init__(self, limit: int, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.limit = limit
        self.exceeded = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > self.limit:
            self.exceeded = True
            raise SkipFile
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


def limit_uploads(request: HttpRequest, limit: int) -> SizeLimitedUploadHandler:
    """Install a ``SizeLimitedUploadHandler`` before ``request.FILES`` is first read."""
    handler = SizeLimitedUploadHandler(limit, request)
    request.upload_handlers.insert(0, handler)
    return handler


def client_address(request: HttpRequest) -> str:
    """The address of the client that sent ``request``, for per-client limits.

    ``REMOTE_ADDR``, unless ``ROOMKIT_CLIENT_IP_HEADER`` names a header set by
    a proxy we trust (e.g. ``X-Forwarded-For``; its first address is taken).
    Without a trusted proxy that header is the client's to forge, so it is
    never read by default.
    """
    header = settings.ROOMKIT_CLIENT_IP_HEADER
    if header:
        forwarded = request.headers.get(header, "")
        first = forwarded.split(",", 1)[0].strip()
        if first:
            return first[:64]
    return request.META.get("REMOTE_ADDR", "") or "unknown"
