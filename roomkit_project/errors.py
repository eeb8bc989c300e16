"""404/500 handlers: JSON for machine paths, HTML for people."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseNotFound, HttpResponseServerError

from rooms.http import error_response

_MACHINE_PREFIXES = ("/api/", "/webhooks/", "/healthz")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith(_MACHINE_PREFIXES):
        return error_response(404, "not_found", f"no such resource: {request.path}")
    return HttpResponseNotFound("<h1>Not found</h1>")


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith(_MACHINE_PREFIXES):
        return error_response(500, "internal_error", "internal error")
    return HttpResponseServerError("<h1>Server error</h1>")
