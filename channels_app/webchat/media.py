"""Chat attachments: images uploaded by web-chat visitors, stored and served back.

``store_chat_upload`` checks who uploads (a web-chat participant of a live
room), what (an image, by its bytes: PNG, JPEG, GIF or WebP; the declared type
is only a hint that must not contradict them) and how much
(``ROOMKIT_MAX_UPLOAD_BYTES``), then stores the file with Django's default
storage under an unguessable name whose extension records the sniffed type.
``open_media`` finds a stored file again for the media view, with the headers
it must be served under.
"""

from __future__ import annotations

import os
import re
import secrets
import unicodedata
from dataclasses import dataclass
from typing import IO

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.utils import timezone

from channels_app.webchat.tokens import ChatClaims
from rooms.enums import RoomStatus
from rooms.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge, TooManyRequests, Unauthorized, UnsupportedMediaType
from rooms.infra.rate_limits import rate_limit_hit
from rooms.models import Participant, Room

# The image types a visitor may upload, with the extension each is stored under.
# No SVG: it is a document that can carry script.
IMAGE_TYPES: dict[str, str] = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
}
_TYPE_OF_EXTENSION = {ext: mime for mime, ext in IMAGE_TYPES.items()}
# Declared types that claim nothing: the bytes decide.
_NEUTRAL_DECLARED_TYPES = frozenset({"", "application/octet-stream"})
_STORED_NAME = re.compile(r"^chat/\d{4}/\d{2}/[0-9a-f]{32}\.(png|jpg|gif|webp)$")
MAX_FILENAME_CHARS = 200


@dataclass(frozen=True)
class StoredMedia:
    """What the page puts into a ``media`` message: ``{"url", "mime_type", "filename", "size"}``."""

    url: str
    mime_type: str
    filename: str
    size: int
    name: str  # the storage name, relative to MEDIA_ROOT

    def as_content_fields(self) -> dict[str, str | int]:
        return {"url": self.url, "mime_type": self.mime_type, "filename": self.filename, "size": self.size}


@dataclass(frozen=True)
class MediaFile:
    """A stored file opened for serving."""

    file: IO[bytes]
    content_type: str
    size: int
    inline: bool


def sniff_image_type(head: bytes) -> str | None:
    """The image type that ``head`` (the file's first bytes) starts with, among the accepted ones."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def clean_filename(raw: str | None, extension: str) -> str:
    """A display name for the upload: the client's base name without control or path characters."""
    name = unicodedata.normalize("NFC", raw or "")
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip().lstrip(".")
    if not name:
        name = "image" + extension
    if len(name) > MAX_FILENAME_CHARS:
        stem, ext = os.path.splitext(name)
        name = stem[: MAX_FILENAME_CHARS - len(ext[:16])] + ext[:16]
    return name


def media_url(name: str) -> str:
    """The absolute URL of a stored file, as other channels' providers must fetch it."""
    return f"{settings.PUBLIC_BASE_URL}/{settings.MEDIA_URL.strip('/')}/{name}"


def chat_uploader(claims: ChatClaims) -> None:
    """Refuse a chat token whose participant may not post into its room (a session not yet written in may)."""
    participant = Participant.objects.filter(pk=claims.participant_id, room_id=claims.room_id).select_related("room").first()
    if participant is None:
        if Room.objects.filter(pk=claims.room_id).exists() or Participant.objects.filter(pk=claims.participant_id).exists():
            raise Unauthorized("the chat token's participant is not in its room")
        return
    if participant.room.status not in (RoomStatus.ACTIVE, RoomStatus.PAUSED):
        raise Conflict(f"room '{participant.room_id}' is {participant.room.status}", code="room_closed")


def _count_upload(claims: ChatClaims) -> None:
    """One upload more for this session, or ``TooManyRequests`` past ``ROOMKIT_CHAT_UPLOADS_PER_SESSION``.

    Counted over the token's lifetime, so a session cannot fill the disk by
    uploading without end (each file may be up to ``ROOMKIT_MAX_UPLOAD_BYTES``).
    """
    cap = settings.ROOMKIT_CHAT_UPLOADS_PER_SESSION
    if cap <= 0:
        return
    wait = rate_limit_hit(f"{cap} per {settings.ROOMKIT_CHAT_TOKEN_MAX_AGE} seconds", "chat-uploads", claims.participant_id)
    if wait:
        raise TooManyRequests(f"this session has uploaded its {cap} files", code="upload_limit", retry_after=wait)


def store_chat_upload(claims: ChatClaims, upload: UploadedFile | None, *, declared_type: str = "") -> StoredMedia:
    """Validate and store one image uploaded by a web-chat visitor.

    Raises ``InvalidInput`` (400) for a missing or empty file,
    ``PayloadTooLarge`` (413) above ``ROOMKIT_MAX_UPLOAD_BYTES``,
    ``UnsupportedMediaType`` (415) when the bytes are not an accepted image or
    the declared type says something else, ``Unauthorized`` (401) or
    ``Conflict`` (409) when the token's participant may not post. Nothing is
    stored unless every check passes.
    """
    chat_uploader(claims)
    if upload is None:
        raise InvalidInput("send the image as the multipart field 'file'", code="missing_file")
    _count_upload(claims)
    return store_image(upload, declared_type=declared_type)


def store_image(upload: UploadedFile, *, declared_type: str = "") -> StoredMedia:
    """Check and store one uploaded image (a visitor's or an operator's), whoever may upload it.

    ``PayloadTooLarge`` (413) above ``ROOMKIT_MAX_UPLOAD_BYTES``, ``InvalidInput``
    (400) when empty, ``UnsupportedMediaType`` (415) when the bytes are not an
    accepted image or the declared type says something else. Nothing is stored
    unless every check passes.
    """
    limit = settings.ROOMKIT_MAX_UPLOAD_BYTES
    size = upload.size or 0
    if size > limit:
        raise PayloadTooLarge(f"the file is {size} bytes; the limit is {limit}", code="file_too_large")
    if size == 0:
        raise InvalidInput("the file is empty", code="empty_file")
    upload.seek(0)
    head = upload.read(16)
    upload.seek(0)
    sniffed = sniff_image_type(head)
    if sniffed is None:
        raise UnsupportedMediaType(
            f"only {', '.join(IMAGE_TYPES)} images are accepted; the file's content is none of them",
            code="unsupported_file_type",
        )
    declared = (declared_type or upload.content_type or "").split(";", 1)[0].strip().lower()
    if declared not in _NEUTRAL_DECLARED_TYPES and declared != sniffed:
        raise UnsupportedMediaType(f"the file was declared as {declared!r} but its content is {sniffed}", code="type_mismatch")
    extension = IMAGE_TYPES[sniffed]
    now = timezone.now()
    wanted = f"chat/{now:%Y}/{now:%m}/{secrets.token_hex(16)}{extension}"
    name = default_storage.save(wanted, upload)
    return StoredMedia(
        url=media_url(name),
        mime_type=sniffed,
        filename=clean_filename(upload.name, extension),
        size=size,
        name=name,
    )


def open_media(name: str) -> MediaFile:
    """Open a stored attachment for serving; ``NotFound`` for anything else.

    Only names this module gives out are served (no traversal, no other files
    under MEDIA_ROOT); the type comes from the stored extension, which
    ``store_chat_upload`` chose from the file's sniffed content.
    """
    if not _STORED_NAME.match(name):
        raise NotFound("no such media file")
    content_type = _TYPE_OF_EXTENSION[os.path.splitext(name)[1]]
    try:
        size = default_storage.size(name)
        handle = default_storage.open(name, "rb")
    except (FileNotFoundError, SuspiciousFileOperation):
        raise NotFound("no such media file") from None
    return MediaFile(file=handle, content_type=content_type, size=size, inline=content_type in IMAGE_TYPES)
