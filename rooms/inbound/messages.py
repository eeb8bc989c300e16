"""What goes into the inbound path and what comes out of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rooms.enums import (
    Direction,
    EventStatus,
    EventType,
)
from rooms.models import RoomEvent


@dataclass
class InboundMessage:
    """A message arriving from any edge. ``content`` is typed content, or give ``text``."""

    channel_id: str | None
    sender: str = ""
    content: dict[str, Any] | None = None
    text: str | None = None
    provider_message_id: str | None = None
    idempotency_key: str | None = None
    room_id: str | None = None
    participant_id: str | None = None
    display_name: str | None = None
    event_type: str = EventType.MESSAGE
    direction: str = Direction.INBOUND
    visibility: str | None = None
    chain_depth: int = 0
    parent_event_id: str | None = None
    correlation_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    # ``room_id`` and ``participant_id`` were reserved for this sender by a
    # signed session (channels_app.webchat.sessions): if they do not exist yet, this
    # first message creates them with those ids.
    reserved_room: bool = False


@dataclass
@dataclass
class InboundResult:
    status: str  # "stored" | "blocked" | "duplicate" | "rejected"
    event: RoomEvent | None
    room_id: str | None
    reason: str = ""
    deliveries: int = 0

    @property
    def duplicate(self) -> bool:
        return self.status == "duplicate"

    @property
    def blocked(self) -> bool:
        return self.status == "blocked" or (self.event is not None and self.event.status == EventStatus.BLOCKED)

    @property
    def seq(self) -> int | None:
        return self.event.seq if self.event else None

    @property
    def event_id(self) -> str | None:
        return self.event.id if self.event else None
