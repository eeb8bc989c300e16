"""The web-chat socket's rules: who a token speaks for, what a visitor may post, what a resume replays.

``channels_app.webchat.consumer.ChatConsumer`` parses frames and calls these; nothing
here knows about sockets.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any
from urllib.parse import unquote

from django.conf import settings
from django.core.files.storage import default_storage

from channels_app.webchat.media import IMAGE_TYPES
from channels_app.webchat.tokens import ChatClaims
from rooms.enums import RoomStatus
from rooms.errors import InvalidInput
from rooms.inbound import InboundMessage, InboundResult, process_inbound
from rooms.models import Participant, Room
from rooms.realtime.catchup import room_socket_events_after

_MEDIA_FIELDS = frozenset({"url", "mime_type", "filename", "size"})
_SAFE_MEDIA_PATH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
MAX_CLIENT_MSG_ID = 200


def webchat_participant(claims: ChatClaims) -> Participant | None:
    """The participant a chat token speaks for, if it is in the token's room and that room is open.

    A session whose room does not exist yet (nobody has written) gets its
    participant as it will be created: unsaved, with the reserved ids.
    """
    p = Participant.objects.filter(pk=claims.participant_id, room_id=claims.room_id).select_related("room").first()
    if p is None:
        if Room.objects.filter(pk=claims.room_id).exists() or Participant.objects.filter(pk=claims.participant_id).exists():
            return None
        return Participant(
            id=claims.participant_id,
            room_id=claims.room_id,
            channel_id=claims.channel_id,
            address=claims.participant_id,
            display_name=claims.display_name or "Visitor",
        )
    if p.room.status not in (RoomStatus.ACTIVE, RoomStatus.PAUSED):
        return None
    return p


def _media_base() -> str:
    if "://" in settings.MEDIA_URL:  # media served from another host (a CDN)
        return settings.MEDIA_URL.rstrip("/") + "/"
    return f"{settings.PUBLIC_BASE_URL}/{settings.MEDIA_URL.strip('/')}/"


def webchat_media_content(media: Any, caption: str | None) -> dict[str, Any]:
    """Content for a visitor's attachment: only a file this site stored (under ``MEDIA_URL``).

    The page uploads first (``POST /api/v1/chat/uploads``) and sends the
    ``media`` object it got back. A URL anywhere else (another site, a path
    outside the media folder, a file that does not exist) is refused: a
    visitor must not make other participants' pages or our transports fetch
    arbitrary URLs in the room's name. The type and size are the stored file's.
    """
    if not isinstance(media, dict) or not set(media) <= _MEDIA_FIELDS:
        raise InvalidInput(f"media must be an object with {', '.join(sorted(_MEDIA_FIELDS))}", code="invalid_media")
    url = media.get("url")
    if not isinstance(url, str):
        raise InvalidInput("media.url is required", code="invalid_media")
    base = _media_base()
    site_relative = "/" + settings.MEDIA_URL.strip("/") + "/"
    if "://" not in settings.MEDIA_URL and url.startswith(site_relative) and not url.startswith("//"):
        url = settings.PUBLIC_BASE_URL + url
    if not url.startswith(base):
        raise InvalidInput("media.url must be a file uploaded to this site", code="invalid_media")
    name = url[len(base) :]
    if not _SAFE_MEDIA_PATH.match(name) or unquote(name) != name or posixpath.normpath(name) != name or name.startswith("../"):
        raise InvalidInput("media.url must be a file uploaded to this site", code="invalid_media")
    extension = posixpath.splitext(name)[1].lower()
    stored_type = next((mime for mime, ext in IMAGE_TYPES.items() if ext == extension), None)
    if stored_type is None or not default_storage.exists(name):
        raise InvalidInput("media.url must be a file uploaded to this site", code="invalid_media")
    mime_type = media.get("mime_type")
    if mime_type is not None and mime_type != stored_type:
        raise InvalidInput(f"media.mime_type must be the file's type, {stored_type}", code="invalid_media")
    content: dict[str, Any] = {"type": "media", "url": url, "mime_type": stored_type, "size": default_storage.size(name)}
    filename = media.get("filename")
    if filename is not None:
        if not isinstance(filename, str) or len(filename) > 255:
            raise InvalidInput("media.filename must be a string of at most 255 characters", code="invalid_media")
        content["filename"] = filename
    if caption:
        content["caption"] = caption
    return content


def webchat_message_send(
    claims: ChatClaims, *, client_msg_id: str | None, text: str | None = None, media: Any = None
) -> InboundResult:
    """Post a visitor's message (text, or media with an optional caption) through the inbound path.

    ``client_msg_id`` is the idempotency key, scoped to the participant (every
    visitor shares the web-chat channel): a retry returns the first result.
    """
    if client_msg_id is not None and (not isinstance(client_msg_id, str) or not 0 < len(client_msg_id) <= MAX_CLIENT_MSG_ID):
        raise InvalidInput(f"client_msg_id must be a string of 1 to {MAX_CLIENT_MSG_ID} characters")
    if text is not None and not isinstance(text, str):
        raise InvalidInput("text must be a string")
    if media is not None:
        content = webchat_media_content(media, text if text and text.strip() else None)
    elif text is None or not text.strip():
        raise InvalidInput("text is required")
    else:
        content = {"type": "text", "body": text}
    return process_inbound(
        InboundMessage(
            channel_id=claims.channel_id,
            room_id=claims.room_id,
            participant_id=claims.participant_id,
            sender=claims.participant_id,
            display_name=claims.display_name or None,
            content=content,
            idempotency_key=f"{claims.participant_id}:{client_msg_id}" if client_msg_id else None,
            reserved_room=True,
        )
    )


def webchat_events_after(room_id: str, after_seq: int, *, limit: int = 500) -> tuple[list[dict[str, Any]], int]:
    """A page of the events a web-chat socket sees live, after ``after_seq``, and the last ``seq`` it covered."""
    return room_socket_events_after(room_id, after_seq, channel_id=settings.ROOMKIT_WEBCHAT_CHANNEL_ID, limit=limit)
