"""JSON error responses in the contract's shape, for every HTTP edge."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from rooms.errors import RoomKitError

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
            return JsonResponse(exc.as_dict(), status=exc.status)

    return wrapper
