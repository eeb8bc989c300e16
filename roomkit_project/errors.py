"""400/403/404/500 handlers: the contract's JSON error on machine paths, HTML for people.

Django answers these itself when a request fails before or outside our views'
own error handling: a body too large for ``DATA_UPLOAD_MAX_MEMORY_SIZE``, a
multipart body it cannot parse, a CSRF or permission refusal, an unknown URL.
"""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound, HttpResponseServerError
from django.http.multipartparser import MultiPartParserError
from django.views import defaults

from rooms.infra.http import error_response

_MACHINE_PREFIXES = ("/api/", "/webhooks/", "/healthz")


def is_machine_path(request: HttpRequest) -> bool:
    """Paths that programs call: they get JSON errors, never an HTML page."""
    return request.path.startswith(_MACHINE_PREFIXES)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if not is_machine_path(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        return error_response(413, "body_too_large", "request body is too large")
    if isinstance(exception, MultiPartParserError):
        return error_response(400, "malformed_multipart", f"malformed multipart body: {exception}")
    if isinstance(exception, (TooManyFieldsSent, TooManyFilesSent)):
        return error_response(400, "too_many_fields", "the form has too many fields or files")
    return error_response(400, "bad_request", "bad request")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_machine_path(request):
        return error_response(403, "forbidden", "forbidden")
    return defaults.permission_denied(request, exception)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if is_machine_path(request):
        return error_response(404, "not_found", f"no such resource: {request.path}")
    return HttpResponseNotFound("<h1>Not found</h1>")


def server_error(request: HttpRequest) -> HttpResponse:
    if is_machine_path(request):
        return error_response(500, "internal_error", "internal error")
    return HttpResponseServerError("<h1>Server error</h1>")
