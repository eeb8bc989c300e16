"""Errors a caller can cause; each maps to one 4xx status and a stable code."""

from __future__ import annotations

import math


class RoomKitError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code

    def as_dict(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}

    @property
    def headers(self) -> dict[str, str]:
        """Response headers the error's answer carries (``Retry-After`` on a 429)."""
        return {}


class InvalidInput(RoomKitError):
    status = 400
    code = "invalid_input"


class Unauthorized(RoomKitError):
    status = 401
    code = "unauthorized"


class NotFound(RoomKitError):
    status = 404
    code = "not_found"


class Forbidden(RoomKitError):
    status = 403
    code = "forbidden"


class Conflict(RoomKitError):
    status = 409
    code = "conflict"


class UnsupportedMediaType(RoomKitError):
    status = 415
    code = "unsupported_media_type"


class PayloadTooLarge(RoomKitError):
    status = 413
    code = "body_too_large"


class TooManyRequests(RoomKitError):
    """A rate limit was reached; ``retry_after`` (seconds) goes out as the ``Retry-After`` header."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, code: str | None = None, retry_after: float = 1.0) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}
