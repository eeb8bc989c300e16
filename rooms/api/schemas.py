"""The REST API's request and response schemas, and the errors every operation may answer.

django-ninja builds the OpenAPI schema (``/api/v1/openapi.json``) from these.
"""

from __future__ import annotations

from typing import Any

from ninja import Path, Schema
from pydantic import Field

from rooms.enums import RoomStatus

# Text the database can store: PostgreSQL refuses NUL, and neither database
# takes unpaired surrogates (which no JSON Schema regex engine can express;
# pydantic refuses them in any field with a pattern). Either is a 400
# ``invalid_text`` (``rooms.api.endpoints``).
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


# Every operation may answer these (the body limit and the content-type check
# apply to every path); each is the contract's error JSON.
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 413: ErrorOut, 415: ErrorOut}
