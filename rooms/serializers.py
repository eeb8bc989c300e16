"""JSON shapes of rooms and events, shared by the API and the sockets."""

from __future__ import annotations

from typing import Any

from rooms.models import ChannelBinding, Participant, Room, RoomEvent


def event_to_dict(event: RoomEvent, *, display_name: str | None = None) -> dict[str, Any]:
    participant = event.source_participant if display_name is None and event.source_participant_id else None
    return {
        "id": event.id,
        "room_id": event.room_id,
        "seq": event.seq,
        "type": event.type,
        "direction": event.direction,
        "source": {
            "channel_id": event.source_channel_id,
            "participant_id": event.source_participant_id,
            "display_name": display_name if display_name is not None else (participant.display_name if participant else ""),
        },
        "content": event.content,
        "status": event.status,
        "chain_depth": event.chain_depth,
        "created_at": event.created_at.isoformat().replace("+00:00", "Z"),
    }


def binding_to_dict(b: ChannelBinding) -> dict[str, Any]:
    return {
        "channel_id": b.channel_id,
        "category": b.category,
        "access": b.access,
        "muted": b.muted,
        "visibility": b.visibility,
        "address": b.address,
        "participant_id": b.participant_id,
    }


def participant_to_dict(p: Participant) -> dict[str, Any]:
    return {
        "id": p.id,
        "display_name": p.display_name,
        "role": p.role,
        "status": p.status,
        "channel_id": p.channel_id,
        "identity_id": p.identity_id,
        "identification": p.identification,
        "last_read_seq": p.last_read_seq,
    }


def conversation_state_to_dict(room: Room) -> dict[str, Any]:
    state = room.conversation_state or {}
    return {
        "phase": state.get("phase"),
        "active_agent_id": state.get("active_agent_id"),
        "previous_agent_id": state.get("previous_agent_id"),
        "handoff_count": state.get("handoff_count", 0),
        "phase_history": state.get("phase_history", []),
        "context": state.get("context", {}),
    }


def room_to_dict(room: Room, *, detail: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": room.id,
        "name": room.name,
        "status": room.status,
        "last_seq": room.last_seq,
        "metadata": room.metadata,
        "created_at": room.created_at.isoformat().replace("+00:00", "Z"),
        "last_activity_at": room.last_activity_at.isoformat().replace("+00:00", "Z") if room.last_activity_at else None,
        "closed_at": room.closed_at.isoformat().replace("+00:00", "Z") if room.closed_at else None,
        "conversation_state": conversation_state_to_dict(room),
    }
    if detail:
        data["bindings"] = [binding_to_dict(b) for b in room.bindings.all()]
        data["participants"] = [participant_to_dict(p) for p in room.participants.all()]
    return data
