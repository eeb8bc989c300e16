"""The browser voice page (``/voice/``): the caller's microphone in, the agent's speech out."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from rooms.errors import NotFound
from voice.selectors import browser_voice_channel


def _voice_page_policy(request: HttpRequest) -> str:
    """Only the page's own script, styles and AudioWorklet modules run; it talks to this host alone.

    AudioWorklet modules are scripts to CSP (``script-src``, not
    ``worker-src``): ``'self'`` admits the capture and playback worklets and
    nothing else. The socket's ``ws://``/``wss://`` on this host are named,
    since CSP Level 2 browsers do not count them as ``'self'``.
    """
    host = request.get_host()
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "media-src 'self'",
            f"connect-src 'self' ws://{host} wss://{host}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


@require_safe
def voice_page(request: HttpRequest) -> HttpResponse:
    """The voice page for ``?channel=<id>`` (default ``ROOMKIT_VOICE_CHANNEL_ID``); 404 when no such voice channel."""
    channel_id = request.GET.get("channel") or settings.ROOMKIT_VOICE_CHANNEL_ID
    try:
        channel = browser_voice_channel(channel_id)
    except NotFound:
        response = render(request, "voice/voice.html", {"channel": None}, status=404)
    else:
        response = render(request, "voice/voice.html", {"channel": channel})
    response["Content-Security-Policy"] = _voice_page_policy(request)
    response["Referrer-Policy"] = "same-origin"
    # The microphone for this page only; no frame embedding another origin may ask for it.
    response["Permissions-Policy"] = "microphone=(self), camera=(), geolocation=()"
    return response
