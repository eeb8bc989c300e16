"""Which room a message belongs to, and the binding it arrives on."""

from __future__ import annotations

from django.db import connection
from django.utils import timezone

from rooms.enums import (
    ChannelCategory,
    ChannelType,
    RoomStatus,
)
from rooms.errors import Conflict, Forbidden, InvalidInput, NotFound
from rooms.inbound.messages import InboundMessage
from rooms.models import Channel, ChannelBinding, Room

# Channel types whose inbound may target a room without a prior binding: our
# own entry points and the agents; they are attached on first use.
_SELF_ATTACHING_TYPES = frozenset({ChannelType.API, ChannelType.CONSOLE, ChannelType.AI})


def route_message(message: InboundMessage, channel: Channel | None) -> tuple[Room | None, ChannelBinding | None]:
    """The room this message belongs to, and the binding it arrives on."""
    if message.room_id:
        room = Room.objects.filter(pk=message.room_id).first()
        if room is None and message.reserved_room and channel is not None:
            # A session's first message: the room it reserved is opened now.
            # Two first messages at once (two tabs) must not both open it.
            if connection.vendor == "postgresql":
                with connection.cursor() as cur:
                    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"room:{message.room_id}"])
                room = Room.objects.filter(pk=message.room_id).first()
            if room is None:
                return None, None
        if room is None:
            raise NotFound(f"unknown room '{message.room_id}'", code="unknown_room")
        if room.status not in (RoomStatus.ACTIVE, RoomStatus.PAUSED):
            raise Conflict(f"room '{room.id}' is {room.status}", code="room_closed")
        if channel is None:
            return room, None
        binding = binding_in_room(room, channel, message.sender, message.participant_id)
        if binding is None:
            if channel.channel_type not in _SELF_ATTACHING_TYPES and channel.category != ChannelCategory.INTELLIGENCE:
                raise Forbidden(f"channel '{channel.id}' is not attached to room '{room.id}'", code="not_attached")
            binding = ChannelBinding.objects.create(
                room=room,
                channel=channel,
                category=channel.category,
                address=message.sender if channel.category == ChannelCategory.TRANSPORT else "",
            )
        return room, binding

    if not message.sender:
        raise InvalidInput("a message without a room needs a sender address", code="no_sender")
    binding = (
        ChannelBinding.objects.filter(
            channel_id=channel.id, address=message.sender, room__status__in=(RoomStatus.ACTIVE, RoomStatus.PAUSED)
        )
        .select_related("room")
        .order_by("-room__created_at")
        .first()
    )
    if binding is not None:
        return binding.room, binding
    if not channel.creates_rooms:
        raise Forbidden(f"channel '{channel.id}' does not open rooms for new senders", code="no_room")
    if connection.vendor == "postgresql":
        # Two first messages from one new sender must not open two rooms.
        # SQLite needs nothing: BEGIN IMMEDIATE already serialises writers.
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"route:{channel.id}:{message.sender}"])
        binding = (
            ChannelBinding.objects.filter(
                channel_id=channel.id,
                address=message.sender,
                room__status__in=(RoomStatus.ACTIVE, RoomStatus.PAUSED),
            )
            .select_related("room")
            .first()
        )
        if binding is not None:
            return binding.room, binding
    return None, None


def binding_in_room(room: Room, channel: Channel, sender: str, participant_id: str | None) -> ChannelBinding | None:
    qs = ChannelBinding.objects.filter(room_id=room.id, channel_id=channel.id)
    if sender:
        exact = qs.filter(address=sender).first()
        if exact is not None:
            return exact
        if not participant_id:
            # A binding at another address belongs to that sender and carries
            # their participant: unless the edge names the participant, only
            # the channel bound as a whole (no address) may carry this sender.
            qs = qs.filter(address="")
    return qs.order_by("id").first()


def open_room_for_channel(channel: Channel, address: str, *, room_id: str | None = None) -> tuple[Room, ChannelBinding]:
    """A new active room with ``channel`` bound at ``address``, plus the channels it brings along.

    The room takes the channel's configured timers; ``attach_on_create`` lists
    channels (an agent, a CRM webhook) to bind into every room it opens.
    ``room_id``: the id a session reserved for it.
    """
    now = timezone.now()
    timers = channel.config.get("room_timers") or {}
    room = Room.objects.create(
        **({"id": room_id} if room_id else {}),
        last_activity_at=now,
        inactive_after_seconds=timers.get("inactive_after_seconds"),
        closed_after_seconds=timers.get("closed_after_seconds"),
    )
    binding = ChannelBinding.objects.create(room=room, channel=channel, category=channel.category, address=address)
    for other_id in channel.config.get("attach_on_create", []):
        other = Channel.objects.filter(pk=other_id, enabled=True).first()
        if other is not None and other.id != channel.id:
            ChannelBinding.objects.create(room=room, channel=other, category=other.category)
    return room, binding
