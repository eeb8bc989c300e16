"""End users' pages, and the chat attachments they show."""

from __future__ import annotations

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from channels_app.inbound_media import open_inbound_media
from channels_app.webchat.media import IMAGE_TYPES, open_media
from rooms.errors import NotFound
from rooms.infra.http import allow_methods, error_response


def _chat_page_policy(request: HttpRequest) -> str:
    """The page runs only its own script and style; pictures may come from any provider's URL."""
    host = request.get_host()
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' blob: data: https: http:",
            "media-src 'self' blob: https: http:",
            f"connect-src 'self' ws://{host} wss://{host}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


@require_GET
def chat_page(request: HttpRequest) -> HttpResponse:
    response = render(
        request,
        "chat.html",
        {
            "max_upload_bytes": settings.ROOMKIT_MAX_UPLOAD_BYTES,
            "upload_types": ",".join(IMAGE_TYPES),
        },
    )
    response["Content-Security-Policy"] = _chat_page_policy(request)
    response["Referrer-Policy"] = "same-origin"
    return response


@allow_methods("GET", "HEAD")
def media_file(request: HttpRequest, path: str) -> HttpResponse:
    """A stored attachment (a chat upload, or media fetched from a vendor), served with headers that keep it inert."""
    try:
        media = open_media(path)
    except NotFound:
        try:
            media = open_inbound_media(path)
        except NotFound as exc:
            return error_response(404, exc.code, exc.message)
    if request.method == "HEAD":
        media.file.close()
        response: HttpResponse = HttpResponse(content_type=media.content_type)
    else:
        response = FileResponse(media.file, content_type=media.content_type)
    response["Content-Length"] = str(media.size)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Disposition"] = "inline" if media.inline else "attachment"
    # Even opened directly, the file is a picture: no script, no plugin, no form.
    response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"
    # Stored names are random and never reused: the bytes behind one never change.
    response["Cache-Control"] = "public, max-age=86400, immutable"
    return response
