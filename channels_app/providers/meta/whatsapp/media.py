"""Inbound WhatsApp media: two Graph calls, then stored as every vendor's media is.

The webhook names a media id, not a file. ``GET /{media_id}`` (with the
access token) answers a short-lived ``url`` on Meta's CDN, which itself needs
the same ``Authorization: Bearer`` header (Cloud API "Media": download
media). ``channels_app.inbound_media`` downloads it: capped, typed by its
bytes, the token sent to that URL's origin only, never to a redirect
elsewhere.
"""

from __future__ import annotations

import httpx

from channels_app.inbound_media import InboundMedia, MediaFetchError, fetch_inbound_media
from channels_app.providers.meta.graph import BearerAuth, graph_get, json_or_none
from rooms.models import Channel

__all__ = ["MediaFetchError", "download"]

# Meta waits a few seconds for a webhook's answer and retries a slow one; a retry of a stored
# message is a duplicate that fetches nothing, so a slow file costs a retry, not the file.
TIMEOUT_SECONDS = 10.0


def download(channel: Channel, media_id: str, *, declared_type: str = "") -> InboundMedia:
    """Fetch the media ``media_id`` and store it; raises ``MediaFetchError``."""
    token = channel.get_secret("access_token")
    if not token:
        raise MediaFetchError("not_configured", "the channel has no access_token")
    try:
        response = graph_get(
            channel, media_id, token=token, params={"phone_number_id": str(channel.config.get("phone_number_id") or "")}
        )
    except httpx.HTTPError:
        raise MediaFetchError("network", "the Graph media endpoint did not answer") from None
    if response.status_code != 200:
        raise MediaFetchError(f"http_{response.status_code}", f"the Graph media endpoint answered HTTP {response.status_code}")
    body = json_or_none(response)
    url = body.get("url") if isinstance(body, dict) else None
    if not isinstance(url, str) or not url:
        raise MediaFetchError("bad_url", "the Graph media endpoint gave no url")
    mime = body.get("mime_type") if isinstance(body.get("mime_type"), str) else declared_type
    return fetch_inbound_media(url, vendor="whatsapp", auth=BearerAuth(token), declared_type=mime, timeout=TIMEOUT_SECONDS)  # type: ignore[arg-type]
