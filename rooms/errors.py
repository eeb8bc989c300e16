"""Errors a caller can cause; each maps to one 4xx status and a stable code."""

from __future__ import annotations


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
