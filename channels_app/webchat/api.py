"""The web chat's REST endpoints: ``POST /api/v1/chat/sessions`` and ``POST /api/v1/chat/uploads``.

A django-ninja router that ``ChannelsAppConfig.ready()`` mounts on the core's
API (``rooms.api.endpoints.api``), so the API's errors, body rules and schema
cover these too while the web chat's rules stay with the web chat.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.http import HttpRequest
from django.http.multipartparser import MultiPartParserError
from ninja import Body, Router, Schema
from ninja.security import HttpBearer
from pydantic import Field

from channels_app.webchat.config import webchat_page_info
from channels_app.webchat.media import store_chat_upload
from channels_app.webchat.sessions import chat_session_start, chat_session_throttle
from channels_app.webchat.tokens import chat_token_verify
from rooms.api.endpoints import require_json
from rooms.api.schemas import ERRORS, STORABLE_TEXT, ErrorOut
from rooms.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from rooms.infra.http import client_address, limit_uploads
from rooms.selectors import get_channel


class ChatBearer(HttpBearer):
    """A web-chat session token (the one ``/ws/chat/`` takes): its claims, or None."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        return chat_token_verify(token)


router = Router(tags=["chat"])


class ChatSessionIn(Schema):
    display_name: str | None = Field(default=None, max_length=200, pattern=STORABLE_TEXT)
    # A voice channel's id for a /voice/ session; omitted: the web chat.
    channel_id: str | None = Field(default=None, max_length=100)


class ChatSessionOut(Schema):
    room_id: str
    participant_id: str
    token: str
    # The web-chat channel's page settings (its config's welcome_message and reply_time; "" when unset),
    # and whether its agents are the offline scripted demo (the page shows a badge, once).
    welcome_message: str = ""
    reply_time: str = ""
    demo_agent: bool = False


class UploadOut(Schema):
    url: str
    mime_type: str
    filename: str
    size: int


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                },
                # Judged by the file's first bytes, whatever the part declares (415 otherwise).
                "encoding": {"file": {"contentType": "image/png, image/jpeg, image/gif, image/webp"}},
            }
        },
    }
}


# Sessions are throttled per client address (the contract's 429 with Retry-After).
@router.post(
    "/sessions",
    auth=None,
    response={201: ChatSessionOut, 429: ErrorOut, **ERRORS},
    summary="Start a chat session",
)
def create_chat_session(request: HttpRequest, payload: ChatSessionIn = Body(None)):
    """Start a web-chat session: a signed token for ``/ws/chat/`` that reserves a room and a participant.

    The answer also carries what the page greets the visitor with: the channel's
    ``welcome_message`` and ``reply_time``, and ``demo_agent`` when the offline
    scripted agent answers (no AI model configured).

    With ``channel_id``, a session on that channel instead: a voice channel's
    token opens ``/ws/voice/`` (the ``/voice/`` page).

    The room appears (in the console, the API) with the visitor's first
    message. Throttled per client address (``ROOMKIT_CHAT_SESSION_RATE``):
    429 with ``Retry-After``.
    """
    require_json(request)
    chat_session_throttle(client_address(request))
    session = chat_session_start(
        display_name=(payload.display_name if payload else "") or "",
        channel_id=(payload.channel_id if payload else "") or "",
    )
    page = webchat_page_info(get_channel(session.channel_id))
    return 201, {
        "room_id": session.room_id,
        "participant_id": session.participant_id,
        "token": session.token,
        "welcome_message": page.welcome_message,
        "reply_time": page.reply_time,
        "demo_agent": page.demo_agent,
    }


@router.post(
    "/uploads",
    auth=ChatBearer(),
    response={201: UploadOut, **ERRORS},
    summary="Upload a chat image",
    openapi_extra=UPLOAD_BODY,
)
def upload_chat_media(request: HttpRequest):
    """Upload an image for a web-chat message (PNG, JPEG, GIF or WebP; ``ROOMKIT_MAX_UPLOAD_BYTES``).

    Authorized by the chat session's token (``Authorization: Bearer <token>``).
    The answer is the ``media`` object the page sends in its next message.
    """
    if (request.content_type or "").lower() != "multipart/form-data":
        raise UnsupportedMediaType("expected Content-Type: multipart/form-data with the image in the field 'file'")
    limiter = limit_uploads(request, settings.ROOMKIT_MAX_UPLOAD_BYTES)
    try:
        upload = request.FILES.get("file")
    except RequestDataTooBig:
        raise PayloadTooLarge(f"form fields exceed {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes") from None
    except (MultiPartParserError, TooManyFilesSent) as exc:
        raise InvalidInput(f"malformed multipart body: {exc}", code="malformed_multipart") from None
    if upload is None and limiter.exceeded:
        raise PayloadTooLarge(f"the file exceeds {settings.ROOMKIT_MAX_UPLOAD_BYTES} bytes", code="file_too_large")
    if upload is None and not request.FILES and not request.POST:
        # Django's parser skips what it cannot read; a multipart body has at least one part (RFC 2046).
        raise InvalidInput("malformed multipart body: no part found", code="malformed_multipart")
    stored = store_chat_upload(request.auth, upload)
    return 201, stored.as_content_fields()
