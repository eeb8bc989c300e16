"""Media a vendor hands us by URL (an MMS picture, a voice note): fetched, capped, typed by its bytes, stored.

Vendors do not put attachments in their webhooks: they send a link to their
own media store, often behind the account's credentials (Twilio's
``MediaUrl{N}`` answers with Basic auth when "HTTP auth for media" is on) and
often redirecting to a CDN. ``fetch_inbound_media`` downloads one such URL:

- credentials go only to ``credential_origin`` (the vendor's API); a redirect
  to any other scheme, host or port is followed without them, so a CDN (or
  anything a redirect names) never sees the account's secret;
- at most ``ROOMKIT_MAX_UPLOAD_BYTES`` are read (the declared length is
  checked first, the bytes counted as they come);
- the type is the bytes' (``sniff_media_type``), not the vendor's label, which
  is kept beside it; bytes of no known kind are stored as
  ``application/octet-stream``, so nothing a sender controls is served as a
  page or a script;
- the file goes to Django's default storage under an unguessable name whose
  extension records the sniffed type, as chat uploads do
  (``channels_app.webchat.media``), and comes back as ``media`` content.

A failure raises ``MediaFetchError`` with a short reason code; the caller
decides what the message keeps (adapters keep the message, never lose it for
its attachment). ``fetch_message_media`` does that for all of one message's
attachments within the vendor's webhook timeout, and ``message_content``
makes the message's text and what was fetched one event's content.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

import httpx
from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from channels_app.http_client import http_client
from channels_app.webchat.media import MediaFile, media_url, sniff_image_type
from rooms.errors import NotFound

# Every type we can recognise by its first bytes, with the extension it is stored under.
MEDIA_TYPES: dict[str, str] = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/heic": ".heic",
    "application/pdf": ".pdf",
    "video/mp4": ".mp4",
    "video/3gpp": ".3gp",
    "video/quicktime": ".mov",
    "audio/mp4": ".m4a",
    "audio/mpeg": ".mp3",
    "audio/ogg": ".ogg",
    "audio/wav": ".wav",
    "audio/amr": ".amr",
    "text/vcard": ".vcf",
}
UNKNOWN_TYPE = "application/octet-stream"
_UNKNOWN_EXTENSION = ".bin"
_TYPE_OF_EXTENSION = {ext: mime for mime, ext in MEDIA_TYPES.items()} | {_UNKNOWN_EXTENSION: UNKNOWN_TYPE}
# Only these are shown inline when served; everything else is an attachment.
_INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_VENDOR = re.compile(r"^[a-z0-9_]{1,32}$")
_STORED_NAME = re.compile(r"^inbound/[a-z0-9_]{1,32}/\d{4}/\d{2}/[0-9a-f]{32}\.[a-z0-9]{2,4}$")
_SNIFF_BYTES = 64
_CHUNK = 64 * 1024
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Below this many seconds left of a message's budget, an attachment is not started.
_MIN_FETCH_SECONDS = 0.5
# The longest caption a media event keeps.
MAX_CAPTION = 4096


class MediaFetchError(Exception):
    """A vendor's media URL gave us no file; ``reason`` is a short code (``too_large``, ``http_404``, ``network``…)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class InboundMedia:
    """One stored attachment: where it is served, its sniffed type, and what the vendor called it."""

    url: str
    mime_type: str
    size: int
    name: str  # the storage name
    declared_type: str = ""

    def as_content(self, caption: str | None = None) -> dict[str, Any]:
        """``media`` content for this file (``rooms.content.kinds.MediaContent``)."""
        content: dict[str, Any] = {"type": "media", "url": self.url, "mime_type": self.mime_type, "size": self.size}
        if caption:
            content["caption"] = caption
        return content


def sniff_media_type(head: bytes) -> str | None:
    """The type the file starting with ``head`` is, among ``MEDIA_TYPES``; None when the bytes say nothing we know."""
    image = sniff_image_type(head)
    if image:
        return image
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand.startswith(b"3g"):
            return "video/3gpp"
        if brand in (b"M4A ", b"M4B "):
            return "audio/mp4"
        if brand == b"qt  ":
            return "video/quicktime"
        if brand in (b"heic", b"heix", b"mif1", b"msf1"):
            return "image/heic"
        return "video/mp4"
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"#!AMR"):
        return "audio/amr"
    if head.removeprefix(b"\xef\xbb\xbf").lstrip().upper().startswith(b"BEGIN:VCARD"):
        return "text/vcard"
    return None


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))


def fetch_inbound_media(
    url: str,
    *,
    vendor: str,
    auth: tuple[str, str] | None = None,
    credential_origin: str | None = None,
    declared_type: str = "",
    max_bytes: int | None = None,
    timeout: float = 10.0,
) -> InboundMedia:
    """Download the vendor's media at ``url`` and store it; raises ``MediaFetchError``.

    ``auth`` (Basic) is sent to ``credential_origin`` only (default: ``url``'s
    own origin), on the first request and on redirects that stay there.
    ``max_bytes`` defaults to ``ROOMKIT_MAX_UPLOAD_BYTES``.
    """
    if not _VENDOR.match(vendor):
        raise ValueError(f"vendor must be a short lower-case name, not {vendor!r}")
    limit = settings.ROOMKIT_MAX_UPLOAD_BYTES if max_bytes is None else max_bytes
    try:
        current = httpx.URL(url)
        trusted = _origin(httpx.URL(credential_origin)) if credential_origin else _origin(current)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise MediaFetchError("bad_url", "the media URL is not a URL") from None
    for _hop in range(MAX_REDIRECTS + 1):
        if current.scheme not in ("http", "https") or not current.host:
            raise MediaFetchError("bad_url", f"cannot fetch a {current.scheme or 'relative'} URL")
        send_auth = auth if auth is not None and _origin(current) == trusted else None
        try:
            with http_client().stream("GET", current, auth=send_auth, timeout=timeout, follow_redirects=False) as response:
                if response.status_code in _REDIRECTS and response.headers.get("Location"):
                    current = current.join(response.headers["Location"])
                    continue
                if response.status_code != 200:
                    raise MediaFetchError(f"http_{response.status_code}", f"the media URL answered HTTP {response.status_code}")
                data = _read_capped(response, limit)
        except httpx.HTTPError as exc:
            raise MediaFetchError("network", f"{type(exc).__name__} while fetching media") from None
        return store_inbound_media(data, vendor=vendor, declared_type=declared_type)
    raise MediaFetchError("too_many_redirects", f"more than {MAX_REDIRECTS} redirects")


def fetch_message_media(
    items: Sequence[tuple[str, str]],
    *,
    vendor: str,
    budget: float,
    timeout: float | None = None,
    auth: tuple[str, str] | None = None,
    credential_origin: str | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Each attachment of one message, ``(url, declared type)``, stored as ``media`` content or noted as lost.

    All of them within ``budget`` seconds (the vendor's webhook timeout, less
    the time storing the message takes), each within ``timeout`` (default:
    the budget); ``auth`` and ``credential_origin`` as for
    ``fetch_inbound_media``. An attachment that could not be fetched becomes a
    text part saying so, and an entry ``{"index", "error", "declared_type"}``
    of the errors returned beside the parts, for the caller to log and keep in
    the event's metadata: a message is never dropped for its attachment.
    """
    parts: list[dict[str, Any]] = []
    errors: list[dict[str, str]] = []
    deadline = time.monotonic() + budget
    for index, (url, declared) in enumerate(items):
        remaining = deadline - time.monotonic()
        try:
            if not url:
                raise MediaFetchError("missing_url", f"attachment {index} has no URL")
            if remaining <= _MIN_FETCH_SECONDS:
                raise MediaFetchError("timeout", "no time left to fetch it within the vendor's webhook timeout")
            media = fetch_inbound_media(
                url,
                vendor=vendor,
                auth=auth,
                credential_origin=credential_origin,
                declared_type=declared,
                timeout=min(budget if timeout is None else timeout, remaining),
            )
        except MediaFetchError as exc:
            errors.append({"index": str(index), "error": exc.reason, "declared_type": declared[:127]})
            label = declared.split(";", 1)[0].strip() or "an attachment"
            parts.append({"type": "text", "body": f"[{label} could not be retrieved]"})
            continue
        parts.append(media.as_content())
    return parts, errors


def message_content(text: str, parts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One event's content for a message's text and its parts (fetched media, a location…); None when both are empty.

    One media part takes the text as its caption; several parts, or a part
    that cannot carry a caption, make a composite led by the text.
    """
    if not parts:
        return {"type": "text", "body": text} if text else None
    if len(parts) == 1 and parts[0]["type"] == "media":
        return {**parts[0], "caption": text[:MAX_CAPTION]} if text else parts[0]
    if len(parts) == 1 and not text:
        return parts[0]
    return {"type": "composite", "parts": ([{"type": "text", "body": text}] if text else []) + parts}


def _read_capped(response: httpx.Response, limit: int) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise MediaFetchError("too_large", f"the media is {declared} bytes; the limit is {limit}")
    buffer = io.BytesIO()
    for chunk in response.iter_bytes(_CHUNK):
        if buffer.tell() + len(chunk) > limit:
            raise MediaFetchError("too_large", f"the media exceeds the {limit}-byte limit")
        buffer.write(chunk)
    if not buffer.tell():
        raise MediaFetchError("empty", "the media URL returned no bytes")
    return buffer.getvalue()


def store_inbound_media(data: bytes, *, vendor: str, declared_type: str = "") -> InboundMedia:
    """Store fetched bytes under ``inbound/<vendor>/YYYY/MM/<random>.<ext>``, typed by what they are."""
    mime = sniff_media_type(data[:_SNIFF_BYTES]) or UNKNOWN_TYPE
    extension = MEDIA_TYPES.get(mime, _UNKNOWN_EXTENSION)
    now = timezone.now()
    name = default_storage.save(f"inbound/{vendor}/{now:%Y}/{now:%m}/{secrets.token_hex(16)}{extension}", ContentFile(data))
    declared = (declared_type or "").split(";", 1)[0].strip().lower()[:127]
    return InboundMedia(url=media_url(name), mime_type=mime, size=len(data), name=name, declared_type=declared)


def open_inbound_media(name: str) -> MediaFile:
    """Open a file this module stored, for serving; ``NotFound`` for any other name.

    The type comes from the stored extension (chosen from the sniffed bytes);
    only pictures are served inline.
    """
    if not _STORED_NAME.match(name):
        raise NotFound("no such media file")
    content_type = _TYPE_OF_EXTENSION.get(os.path.splitext(name)[1])
    if content_type is None:
        raise NotFound("no such media file")
    try:
        size = default_storage.size(name)
        handle: IO[bytes] = default_storage.open(name, "rb")
    except (FileNotFoundError, SuspiciousFileOperation):
        raise NotFound("no such media file") from None
    return MediaFile(file=handle, content_type=content_type, size=size, inline=content_type in _INLINE_TYPES)
