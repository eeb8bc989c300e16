"""REST API ``/api/v1/``: rooms, events, posting messages (the web chat mounts its own endpoints here).

django-ninja gives typed handlers and the OpenAPI schema at
``/api/v1/openapi.json``. Handlers parse and authorize, then call a service
or a selector; posting a message goes through the one inbound path.
"""

from __future__ import annotations

import functools
from typing import Any

from django.http import Http404, HttpRequest
from ninja import NinjaAPI, Query
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.docs import Swagger
from ninja.parser import Parser
from ninja.security import HttpBearer

from rooms.api.schemas import (
    ERRORS,
    ROOM_ID,
    STORABLE_TEXT,
    EventsOut,
    EventsQuery,
    IndexOut,
    MessageIn,
    MessageOut,
    RoomDetailOut,
    RoomFilter,
    RoomsOut,
)
from rooms.api.services import api_message_post
from rooms.api.tokens import api_token_user
from rooms.errors import RoomKitError, UnsupportedMediaType
from rooms.infra.http import json_object_body
from rooms.selectors import get_room, get_room_detail, room_events, room_list
from rooms.serializers import event_to_dict, room_to_dict


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        return api_token_user(token)


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


class RoomKitAPI(NinjaAPI):
    def get_openapi_operation_id(self, operation: Any) -> str:
        # Stable ids for generated clients and doc links, wherever the handler's module lives.
        return f"rooms_api_{operation.view_func.__name__}"


api = RoomKitAPI(
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


def require_json(request: HttpRequest) -> None:
    """415 for a body that is not declared JSON (ninja would try to parse it anyway)."""
    if request.body and (request.content_type or "").lower() != "application/json":
        raise UnsupportedMediaType("expected Content-Type: application/json")


@api.get("/", auth=None, response={200: IndexOut, **ERRORS}, tags=["meta"], summary="Index of the API")
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


@api.get("/rooms", response={200: RoomsOut, **ERRORS}, tags=["rooms"], summary="List rooms")
def list_rooms(request: HttpRequest, filters: Query[RoomFilter]):
    """Rooms, most recently active first, optionally of one ``status``; ``count`` is the total."""
    rooms, count = room_list(status=filters.status, offset=filters.offset, limit=filters.limit)
    return {"rooms": [room_to_dict(r) for r in rooms], "count": count}


@api.get("/rooms/{room_id}", response={200: RoomDetailOut, **ERRORS}, tags=["rooms"], summary="A room")
def room_detail(request: HttpRequest, room_id: str = ROOM_ID):
    """The room with its bindings, participants and conversation state."""
    return room_to_dict(get_room_detail(room_id), detail=True)


@api.get("/rooms/{room_id}/events", response={200: EventsOut, **ERRORS}, tags=["rooms"], summary="A room's events")
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
    response={201: MessageOut, 200: MessageOut, **ERRORS},
    tags=["rooms"],
    summary="Post a message into a room",
)
def post_message(request: HttpRequest, payload: MessageIn, room_id: str = ROOM_ID):
    """Post a text message into the room through the inbound path.

    ``idempotency_key`` makes a retry safe: the repeat answers 200 with the
    first event and changes nothing.
    """
    require_json(request)
    result = api_message_post(
        user=request.auth,
        room_id=room_id,
        text=payload.text,
        sender=payload.sender,
        idempotency_key=payload.idempotency_key,
    )
    body = {
        "event_id": result.event_id,
        "room_id": result.room_id,
        "seq": result.seq,
        "duplicate": result.duplicate,
        "status": result.status,
    }
    return (200 if result.duplicate else 201), body
