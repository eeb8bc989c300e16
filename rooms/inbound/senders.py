"""Who sent a message: the sender's participant, identity resolution and its hooks."""

from __future__ import annotations

from rooms import hooks
from rooms.enums import (
    PUSH_CHANNEL_TYPES,
    ChannelCategory,
    ChannelType,
    Direction,
    EventType,
    IdentificationStatus,
    ParticipantRole,
    Visibility,
)
from rooms.errors import Forbidden
from rooms.hooks import HookAction, HookContext, HookTrigger
from rooms.inbound import statements
from rooms.inbound.identity import IdentityResult, resolve_identity
from rooms.inbound.messages import InboundMessage
from rooms.inbound.transcoding import transcode_for
from rooms.models import Channel, ChannelBinding, Delivery, Identity, Participant, Room, RoomEvent


def participant_for(
    message: InboundMessage,
    channel: Channel | None,
    room: Room | None,
    binding: ChannelBinding | None,
    record: hooks.HookRecord | None = None,
) -> tuple[Participant | None, hooks.HookResult | None]:
    """The sender's participant (unsaved if new) and any identity-hook decision.

    ``record`` keeps the identity hooks' outcomes across retries of the
    caller's transaction, so each runs once per message.
    """
    if message.participant_id:
        p = Participant.objects.filter(pk=message.participant_id).first()
        if p is None and room is None and message.reserved_room and channel is not None:
            # The session's first message: its participant is created with the reserved id.
            return Participant(
                id=message.participant_id,
                channel=channel,
                address=message.sender,
                display_name=(message.display_name or "Visitor")[:200],
            ), None
        if p is None or (room is not None and p.room_id != room.id):
            raise Forbidden("participant is not in this room", code="not_a_participant")
        return p, None
    if channel is None:
        return None, None
    if binding is not None and binding.participant_id:
        return Participant.objects.get(pk=binding.participant_id), None
    if channel.category == ChannelCategory.INTELLIGENCE:
        existing = Participant.objects.filter(room=room, channel=channel).first() if room else None
        return existing or Participant(
            channel=channel,
            display_name=message.display_name or channel.name or channel.id,
            role=ParticipantRole.AGENT,
            identification=IdentificationStatus.IDENTIFIED,
        ), None
    if room is not None and message.sender:
        existing = Participant.objects.filter(room=room, channel=channel, address=message.sender).first()
        if existing is not None:
            return existing, None
    role = ParticipantRole.OPERATOR if channel.channel_type == ChannelType.CONSOLE else ParticipantRole.MEMBER
    result = resolve_identity(channel=channel, address=message.sender, display_name=message.display_name)
    decision = identity_hooks(result, message, channel, room, record)
    identity = result.identity
    status = result.status
    if decision is not None and decision.identity_id:
        identity = Identity.objects.filter(pk=decision.identity_id).first()
        status = IdentificationStatus.IDENTIFIED if identity else status
    elif decision is not None and decision.challenge:
        status = IdentificationStatus.CHALLENGED
    name = (
        (decision.display_name if decision else None)
        or message.display_name
        or (identity.display_name if identity else "")
        or message.sender
    )
    return Participant(
        channel=channel,
        address=message.sender,
        display_name=name[:200],
        identity=identity,
        identification=status,
        role=role,
    ), decision


def identity_hooks(
    result: IdentityResult,
    message: InboundMessage,
    channel: Channel,
    room: Room | None,
    record: hooks.HookRecord | None = None,
) -> hooks.HookResult | None:
    trigger = {
        IdentificationStatus.AMBIGUOUS: HookTrigger.ON_IDENTITY_AMBIGUOUS,
        IdentificationStatus.UNKNOWN: HookTrigger.ON_IDENTITY_UNKNOWN,
    }.get(result.status)
    if trigger is None or not hooks.registry.has(trigger):
        return None
    ctx = HookContext(
        room_id=room.id if room else None,
        channel_id=channel.id,
        channel_type=channel.channel_type,
        direction=message.direction,
        room=room,
        extra={"address": message.sender, "message": message},
    )
    for _hook, decision in hooks.iter_sync_hooks(trigger, result, ctx, record=record):
        if decision.identity_id or decision.challenge or decision.action == HookAction.BLOCK:
            return decision
    return None


def challenge_event(
    room_id: str,
    blocked_seq: int,
    channel: Channel | None,
    binding: ChannelBinding | None,
    decision: hooks.HookResult,
    parent: RoomEvent,
    now,
) -> tuple[RoomEvent, Delivery | None]:
    """The question put to a sender we could not identify, and its delivery to them only."""
    ev = RoomEvent.objects.create(
        room_id=room_id,
        seq=statements.take_seq(room_id, now)[0],
        type=EventType.SYSTEM,
        direction=Direction.OUTBOUND,
        content={"type": "text", "body": decision.challenge},
        visibility=channel.id if channel else Visibility.INTERNAL,
        parent_event=parent,
        chain_depth=parent.chain_depth + 1,
        metadata={"identity_challenge": True},
        created_at=now,
    )
    delivery = None
    if binding is not None and channel is not None and channel.channel_type not in PUSH_CHANNEL_TYPES:
        fitted = transcode_for(ev.content, channel.effective_capabilities())
        delivery = Delivery.objects.create(
            event=ev,
            binding=binding,
            channel=channel,
            recipient=binding.address,
            content=fitted.content or ev.content,
            segments=fitted.segments,
        )
    return ev, delivery
