"""Live fan-out over the channel layer: room events and ephemeral events.

Each room has one group; WebSocket consumers join it and relay what arrives.
Ephemeral events (typing, presence, read receipts, tool calls) travel the same
way but are never stored as messages.
"""

from __future__ import annotations

import time
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer


def room_group(room_id: str) -> str:
    return f"room.{room_id}"


def staff_group(room_id: str) -> str:
    return f"staff.room.{room_id}"


def _send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(group, message)


def publish_event(room_id: str, event: dict[str, Any], *, public: bool) -> None:
    """Send a stored event to the room's sockets (``public``) and to operators."""
    message = {"type": "room.event", "event": event}
    if public:
        _send(room_group(room_id), message)
    _send(staff_group(room_id), message)


def publish_ephemeral(room_id: str, kind: str, **data: Any) -> None:
    _send(room_group(room_id), {"type": "room.ephemeral", "kind": kind, "ts": time.time(), **data})


def publish_typing(room_id: str, participant_id: str, *, typing: bool = True, display_name: str = "") -> None:
    publish_ephemeral(
        room_id,
        "typing_start" if typing else "typing_stop",
        participant_id=participant_id,
        display_name=display_name,
    )


def publish_presence(room_id: str, participant_id: str, status: str) -> None:
    publish_ephemeral(room_id, "presence", participant_id=participant_id, status=status)


def publish_read_receipt(room_id: str, participant_id: str, seq: int) -> None:
    publish_ephemeral(room_id, "read_receipt", participant_id=participant_id, seq=seq)
