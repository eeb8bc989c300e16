"""REST API ``/api/v1/``: chat sessions, rooms, events, posting messages.

django-ninja gives typed handlers and the OpenAPI schema at
``/api/v1/openapi.json``. Handlers parse and authorize, then call a service
or a selector; posting a message goes through the one inbound path.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.http import Http404, HttpRequest
from django.http.multipartparser import MultiPartParserError
from ninja import Body, NinjaAPI, Path, Query, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.docs import Swagger
from ninja.parser import Parser
from ninja.security import HttpBearer
from pydantic import Field

from channels_app.webchat.media import store_chat_upload
from channels_app.webchat.sessions import chat_session_start, chat_session_throttle, ensure_system_channel
from channels_app.webchat.tokens import api_token_user, chat_token_verify
from rooms.enums import ChannelType, RoomStatus
from rooms.errors import InvalidInput, PayloadTooLarge, RoomKitError, UnsupportedMediaType
from rooms.inbound import InboundMessage, process_inbound
from rooms.infra.http import client_address, json_object_body, limit_uploads
from rooms.models import Room
from rooms.selectors import get_room, get_room_detail, room_events
from rooms.serializers import event_to_dict, room_to_dict


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        return api_token_user(token)


class ChatBearer(HttpBearer):
    """A web-chat session token (the one ``/ws/chat/`` takes): its claims, or None."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        return chat_token_verify(token)


class JSONObjectParser(Parser):
    """The webhooks' body rules for the API too: 415 for another content type,
    400 ``malformed_json`` for anything but a JSON object (ninja would answer a
    generic 400 and accept an array).

    Text is checked field by field, by the schemas (``STORABLE_TEXT``): a
    field the API does not read is ignored whatever it holds, as the OpenAPI
    schema says.
    """

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        return json_object_body(request, refuse_unstorable_text=False)


api = NinjaAPI(
    title="RoomKit Django API",
    version="1",
    urls_namespace="api-v1",
    description=(
        "Rooms, their ordered events and posting into them; web-chat sessions and uploads. "
        'Errors are `{"error": {"code", "message"}}` with a 4xx status for anything the caller got wrong.'
    ),
    # Swagger UI from django-ninja's own static files (no CDN), under the site's CSP.
    docs=Swagger(settings={"deepLinking": True, "validatorUrl": None}),
    docs_url="/docs",
    openapi_url="/openapi.json",
    auth=BearerToken(),
    parser=JSONObjectParser(),
)


def _err(request: HttpRequest, status: int, code: str, message: str):
    return api.create_response(request, {"error": {"code": code, "message": message}}, status=status)


@api.exception_handler(RoomKitError)
def _roomkit_error(request: HttpRequest, exc: RoomKitError):
    response = api.create_response(request, exc.as_dict(), status=exc.status)
    for name, value in exc.headers.items():
        response[name] = value
    return response


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError):
    first = exc.errors[0] if exc.errors else {}
    where = ".".join(str(p) for p in first.get("loc", []) if p not in ("body", "payload", "query"))
    message = first.get("msg", "invalid request")
    if first.get("type") == "json_invalid" or "JSON" in message:
        return _err(request, 400, "malformed_json", "body is not valid JSON")
    if first.get("type") == "string_unicode" or (
        first.get("type") == "string_pattern_mismatch" and (first.get("ctx") or {}).get("pattern") == STORABLE_TEXT
    ):
        return _err(request, 400, "invalid_text", f"{where}: contains a NUL character or an unpaired surrogate")
    return _err(request, 400, "invalid_input", f"{where}: {message}" if where else message)


@api.exception_handler(AuthenticationError)
def _auth_error(request: HttpRequest, exc: AuthenticationError):
    return _err(request, 401, "unauthorized", "missing or invalid bearer token")


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError):
    # ninja wraps whatever the body parser raised in a generic 400; keep our own code and status.
    if isinstance(exc.__cause__, RoomKitError):
        return _roomkit_error(request, exc.__cause__)
    return _err(request, exc.status_code, "http_error", str(exc))


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404):
    return _err(request, 404, "not_found", "not found")


def _require_json(request: HttpRequest) -> None:
    if request.body and (request.content_type or "").lower() != "application/json":
        raise UnsupportedMediaType("expected Content-Type: application/json")


# Text the database can store: PostgreSQL refuses NUL, and neither database
# takes unpaired surrogates (which no JSON Schema regex engine can express;
# pydantic refuses them in any field with a pattern). Either is a 400
# ``invalid_text`` (``_validation_error``).
STORABLE_TEXT = r"^[^\u0000]*$"
# Room ids are opaque strings of up to 64 characters (``Room.id``).
ROOM_ID = Path(..., min_length=1, max_length=64, pattern=STORABLE_TEXT, description="The room's id.")
# The largest integer the databases store (a signed 64-bit column).
INT64_MAX = 2**63 - 1


class ErrorDetail(Schema):
    code: str
    message: str


class ErrorOut(Schema):
    error: ErrorDetail


class ChatSessionIn(Schema):
    display_name: str | None = Field(default=None, max_length=200, pattern=STORABLE_TEXT)


class ChatSessionOut(Schema):
    room_id: str
    participant_id: str
    token: str


class MessageIn(Schema):
    text: str = Field(min_length=1, max_length=100_000, pattern=STORABLE_TEXT)
    idempotency_key: str | None = Field(
        default=None, max_length=255, pattern=STORABLE_TEXT, description="A retry with the same key posts once."
    )
    sender: str | None = Field(default=None, max_length=200, pattern=STORABLE_TEXT)


class MessageOut(Schema):
    event_id: str | None
    room_id: str | None
    seq: int | None
    duplicate: bool
    status: str


class SourceOut(Schema):
    channel_id: str | None
    participant_id: str | None
    display_name: str


class EventOut(Schema):
    id: str
    room_id: str
    seq: int
    type: str
    direction: str
    source: SourceOut
    content: dict[str, Any]
    status: str
    chain_depth: int
    created_at: str


class EventsOut(Schema):
    events: list[EventOut]
    next_after_seq: int


class ConversationStateOut(Schema):
    phase: str | None
    active_agent_id: str | None
    previous_agent_id: str | None
    handoff_count: int
    phase_history: list[dict[str, Any]]
    context: dict[str, Any]


class BindingOut(Schema):
    channel_id: str
    category: str
    access: str
    muted: bool
    visibility: str
    address: str
    participant_id: str | None


class ParticipantOut(Schema):
    id: str
    display_name: str
    role: str
    status: str
    channel_id: str | None
    identity_id: str | None
    identification: str
    last_read_seq: int


class RoomOut(Schema):
    id: str
    name: str
    status: str
    last_seq: int
    metadata: dict[str, Any]
    created_at: str
    last_activity_at: str | None
    closed_at: str | None
    conversation_state: ConversationStateOut


class RoomDetailOut(RoomOut):
    bindings: list[BindingOut]
    participants: list[ParticipantOut]


class RoomsOut(Schema):
    rooms: list[RoomOut]
    count: int


class RoomFilter(Schema):
    status: RoomStatus | None = None
    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0, le=INT64_MAX)


class EventsQuery(Schema):
    after_seq: int = Field(default=0, ge=0, le=INT64_MAX)
    limit: int = Field(default=100, ge=1, le=1000)


class EndpointOut(Schema):
    method: str
    path: str
    summary: str
    auth: str | None = Field(description="The security scheme the operation takes, or null for none.")


class IndexOut(Schema):
    title: str
    version: str
    openapi: str = Field(description="The OpenAPI schema.")
    docs: str = Field(description="Human-readable documentation of this schema.")
    endpoints: list[EndpointOut]


class UploadOut(Schema):
    url: str
    mime_type: str
    filename: str
    size: int


# Every operation may answer these (the body limit and the content-type check
# apply to every path); each is the contract's error JSON.
_ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 413: ErrorOut, 415: ErrorOut}
_UPLOAD_BODY = {
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


@api.get("/", auth=None, response={200: IndexOut, **_ERRORS}, tags=["meta"], summary="Index of the API")
def api_index(request: HttpRequest):
    """Where everything is: the schema, its documentation, and each operation, read from the schema."""
    return _index()


@functools.cache
def _index() -> dict[str, Any]:
    # The schema is built from the routes at start-up and never changes while running.
    schema = api.get_openapi_schema()
    root = api.get_root_path({})
    endpoints = [
        {
            "method": method.upper(),
            "path": path,
            "summary": operation.get("summary", ""),
            "auth": next(iter(operation["security"][0]), None) if operation.get("security") else None,
        }
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    ]
    return {
        "title": api.title,
        "version": api.version,
        "openapi": f"{root}openapi.json",
        "docs": f"{root}docs",
        "endpoints": endpoints,
    }


# Sessions are throttled per client address (the contract's 429 with Retry-After).
@api.post(
    "/chat/sessions",
    auth=None,
    response={201: ChatSessionOut, 429: ErrorOut, **_ERRORS},
    tags=["chat"],
    summary="Start a chat session",
)
def create_chat_session(request: HttpRequest, payload: ChatSessionIn = Body(None)):
    """Start a web-chat session: a signed token for ``/ws/chat/`` that reserves a room and a participant.

    The room appears (in the console, the API) with the visitor's first
    message. Throttled per client address (``ROOMKIT_CHAT_SESSION_RATE``):
    429 with ``Retry-After``.
    """
    _require_json(request)
    chat_session_throttle(client_address(request))
    session = chat_session_start(display_name=(payload.display_name if payload else "") or "")
    return 201, {"room_id": session.room_id, "participant_id": session.participant_id, "token": session.token}


@api.post(
    "/chat/uploads",
    auth=ChatBearer(),
    response={201: UploadOut, **_ERRORS},
    tags=["chat"],
    summary="Upload a chat image",
    openapi_extra=_UPLOAD_BODY,
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


@api.get("/rooms", response={200: RoomsOut, **_ERRORS}, tags=["rooms"], summary="List rooms")
def list_rooms(request: HttpRequest, filters: Query[RoomFilter]):
    """Rooms, most recently active first, optionally of one ``status``; ``count`` is the total."""
    qs = Room.objects.all().order_by("-last_activity_at", "-created_at")
    if filters.status:
        qs = qs.filter(status=filters.status)
    rooms = list(qs[filters.offset : filters.offset + filters.limit])
    return {"rooms": [room_to_dict(r) for r in rooms], "count": qs.count()}


@api.get("/rooms/{room_id}", response={200: RoomDetailOut, **_ERRORS}, tags=["rooms"], summary="A room")
def room_detail(request: HttpRequest, room_id: str = ROOM_ID):
    """The room with its bindings, participants and conversation state."""
    return room_to_dict(get_room_detail(room_id), detail=True)


@api.get("/rooms/{room_id}/events", response={200: EventsOut, **_ERRORS}, tags=["rooms"], summary="A room's events")
def list_events(request: HttpRequest, query: Query[EventsQuery], room_id: str = ROOM_ID):
    """The room's events in ``seq`` order, after ``after_seq``."""
    get_room(room_id)
    events = room_events(room_id, after_seq=query.after_seq, limit=query.limit)
    return {
        "events": [event_to_dict(e) for e in events],
        "next_after_seq": events[-1].seq if events else query.after_seq,
    }


@api.post(
    "/rooms/{room_id}/messages",
    response={201: MessageOut, 200: MessageOut, **_ERRORS},
    tags=["rooms"],
    summary="Post a message into a room",
)
def post_message(request: HttpRequest, payload: MessageIn, room_id: str = ROOM_ID):
    """Post a text message into the room through the inbound path.

    ``idempotency_key`` makes a retry safe: the repeat answers 200 with the
    first event and changes nothing.
    """
    _require_json(request)
    ensure_system_channel(settings.ROOMKIT_API_CHANNEL_ID, ChannelType.API, "REST API")
    user = request.auth
    sender = payload.sender or user.get_username()
    result = process_inbound(
        InboundMessage(
            channel_id=settings.ROOMKIT_API_CHANNEL_ID,
            room_id=room_id,
            sender=f"api:{user.pk}:{sender}"[:255],
            display_name=sender,
            text=payload.text,
            idempotency_key=_caller_key(user.pk, payload.idempotency_key),
        )
    )
    body = {
        "event_id": result.event_id,
        "room_id": result.room_id,
        "seq": result.seq,
        "duplicate": result.duplicate,
        "status": result.status,
    }
    return (200 if result.duplicate else 201), body


def _caller_key(user_pk: Any, key: str | None) -> str | None:
    """The idempotency key as stored: scoped to the token's user.

    Every integrator posts through the one API channel, where keys are unique;
    unscoped, one integrator's key "1" would swallow another's message as a
    duplicate. An empty key is no key. Long keys are hashed to fit the column.
    """
    if not key:
        return None
    scoped = f"{user_pk}:{key}"
    if len(scoped) > 255:
        scoped = f"{user_pk}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"
    return scoped
