"""Web-chat sessions: a visitor gets a signed token for a room and a participant of their own."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction

from channels_app.webchat.tokens import ChatClaims, chat_token_issue, chat_token_verify
from rooms.enums import ChannelCategory, ChannelType, RoomStatus
from rooms.errors import Conflict, NotFound, TooManyRequests
from rooms.hooks import HookTrigger
from rooms.inbound.routing import open_room_for_channel
from rooms.infra.rate_limits import rate_limit_hit
from rooms.models import Channel, ChannelBinding, Participant, Room, new_id
from rooms.realtime import broadcast as realtime
from rooms.selectors import get_channel
from rooms.services import ensure_system_channel, fire_hooks_on_commit


@dataclass(frozen=True)
class ChatSession:
    room_id: str
    participant_id: str
    token: str
    channel_id: str = ""


def chat_session_throttle(client: str) -> None:
    """Count a session start for ``client`` (an address); ``TooManyRequests`` past ``ROOMKIT_CHAT_SESSION_RATE``."""
    wait = rate_limit_hit(settings.ROOMKIT_CHAT_SESSION_RATE, "chat-sessions", client)
    if wait:
        raise TooManyRequests("too many chat sessions from this address; try again later", retry_after=wait)


# Channels a browser session may be for: the web chat, and voice channels the browser speaks to (``/voice/``).
SESSION_CHANNEL_TYPES = frozenset({ChannelType.WEBSOCKET, ChannelType.VOICE})


def session_channel(channel_id: str) -> Channel:
    """The channel a browser session is asked for: it exists, is enabled and is one a browser joins.

    ``NotFound`` (404) otherwise: no such channel, disabled, or one a browser
    does not open sessions on (an SMS line, a phone line, the API) — there is
    no such browser channel.
    """
    channel = get_channel(channel_id)
    if not channel.enabled:
        raise NotFound(f"channel '{channel_id}' is disabled", code="unknown_channel")
    browser = channel.channel_type == ChannelType.WEBSOCKET or channel.provider == "browser"
    if channel.channel_type not in SESSION_CHANNEL_TYPES or channel.category != ChannelCategory.TRANSPORT or not browser:
        raise NotFound(f"channel '{channel_id}' takes no browser sessions", code="unknown_channel")
    return channel


def chat_session_start(*, display_name: str = "", open_now: bool = False, channel_id: str = "") -> ChatSession:
    """A new visitor's session on the web chat: a signed token for a room and a participant.

    Nothing is stored: the token reserves the room's and the participant's
    ids, and the visitor's first message creates both (the inbound path, with
    ``InboundMessage.reserved_room``). So a page load or a bot that never
    writes leaves no empty room in the console. ``open_now`` creates them at
    once, for callers that bind other channels to the room before anyone
    writes (tools, benchmarks, tests); the HTTP endpoint never does.
    ``channel_id`` names another channel a browser joins (a voice channel,
    for ``/voice/``); by default the session is the web chat's.
    """
    if channel_id and channel_id != settings.ROOMKIT_WEBCHAT_CHANNEL_ID:
        channel = session_channel(channel_id)
    else:
        channel = ensure_system_channel(settings.ROOMKIT_WEBCHAT_CHANNEL_ID, ChannelType.WEBSOCKET, "Web chat")
    name = (display_name or "").strip()[:200] or "Visitor"
    token = chat_token_issue(room_id=new_id(), participant_id=new_id(), display_name=name, channel_id=channel.id)
    claims = chat_token_verify(token)
    if open_now:
        chat_session_open(claims)
    return ChatSession(claims.room_id, claims.participant_id, token, claims.channel_id)


def chat_session_open(claims: ChatClaims) -> Room:
    """Create the room and participant a session reserved, if nobody has yet; return the room.

    What a visitor's first message does in passing (``reserved_room``), for
    callers that need the room before anyone writes. Idempotent.
    """
    channel = get_channel(claims.channel_id)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"room:{claims.room_id}"])
        room = Room.objects.filter(pk=claims.room_id).first()
        if room is not None:
            return room
        room, binding = open_room_for_channel(channel, claims.participant_id, room_id=claims.room_id)
        participant = Participant.objects.create(
            id=claims.participant_id,
            room=room,
            channel=channel,
            display_name=claims.display_name or "Visitor",
            address=claims.participant_id,
        )
        binding.participant = participant
        binding.save(update_fields=["participant"])
        fire_hooks_on_commit(HookTrigger.ON_ROOM_CREATED, "room", room.id)
        transaction.on_commit(lambda: realtime.announce_room_created(room.id))
    return room


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
    token = chat_token_issue(room_id=room.id, participant_id=participant.id, display_name=name, channel_id=channel.id)
    return ChatSession(room.id, participant.id, token, channel.id)
