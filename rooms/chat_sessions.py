"""Web-chat sessions: a visitor gets a room, a participant and a signed token."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from rooms import realtime
from rooms.enums import ChannelCategory, ChannelType, RoomStatus
from rooms.errors import Conflict, NotFound
from rooms.hooks import HookTrigger
from rooms.models import Channel, ChannelBinding, Participant, Room
from rooms.routing import open_room_for_channel
from rooms.services import fire_hooks_on_commit
from rooms.tokens import chat_token_issue


@dataclass(frozen=True)
class ChatSession:
    room_id: str
    participant_id: str
    token: str


def ensure_system_channel(channel_id: str, channel_type: str, name: str) -> Channel:
    """Our own entry-point channels (web chat, API, console) exist on first use."""
    channel, _ = Channel.objects.get_or_create(
        pk=channel_id,
        defaults={"channel_type": channel_type, "category": ChannelCategory.TRANSPORT, "name": name},
    )
    return channel


def chat_session_start(*, display_name: str = "") -> ChatSession:
    """Open a room on the web-chat channel for a new visitor."""
    channel = ensure_system_channel(settings.ROOMKIT_WEBCHAT_CHANNEL_ID, ChannelType.WEBSOCKET, "Web chat")
    name = (display_name or "").strip()[:200] or "Visitor"
    with transaction.atomic():
        room, binding = open_room_for_channel(channel, "")
        participant = Participant.objects.create(room=room, channel=channel, display_name=name)
        # The participant id is the visitor's address on the web-chat channel.
        participant.address = participant.id
        participant.save(update_fields=["address"])
        binding.address = participant.id
        binding.participant = participant
        binding.save(update_fields=["address", "participant"])
        fire_hooks_on_commit(HookTrigger.ON_ROOM_CREATED, "room", room.id)
        transaction.on_commit(lambda: realtime.announce_room_created(room.id))
    return ChatSession(room.id, participant.id, chat_token_issue(room_id=room.id, participant_id=participant.id))


def chat_session_join(room_id: str, *, display_name: str = "") -> ChatSession:
    """Add another web-chat visitor to an existing room (an invitation, a second device).

    The new participant gets their own web-chat binding and token, exactly as
    the visitor who opened the room did. Not exposed over HTTP: whoever calls
    it decides who may join.
    """
    channel = ensure_system_channel(settings.ROOMKIT_WEBCHAT_CHANNEL_ID, ChannelType.WEBSOCKET, "Web chat")
    name = (display_name or "").strip()[:200] or "Visitor"
    with transaction.atomic():
        room = Room.objects.select_for_update().filter(pk=room_id).first()
        if room is None:
            raise NotFound(f"unknown room '{room_id}'", code="unknown_room")
        if room.status not in (RoomStatus.ACTIVE, RoomStatus.PAUSED):
            raise Conflict(f"room '{room_id}' is {room.status}", code="room_closed")
        participant = Participant.objects.create(room=room, channel=channel, display_name=name)
        participant.address = participant.id
        participant.save(update_fields=["address"])
        ChannelBinding.objects.create(
            room=room, channel=channel, category=channel.category, address=participant.id, participant=participant
        )
    return ChatSession(room.id, participant.id, chat_token_issue(room_id=room.id, participant_id=participant.id))
