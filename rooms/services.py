"""Room lifecycle: create, pause, close, reopen, attach/detach, mute, access, timers.

Each service owns its transaction; hooks and broadcasts run after commit.
Changes that matter to the conversation are recorded as system events through
the inbound path, so the room's log tells its own story.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from rooms.addresses import normalize_channel_address
from rooms.enums import Access, ChannelCategory, EventType, RoomStatus, Visibility
from rooms.errors import Conflict, InvalidInput, NotFound
from rooms.hooks import HookTrigger
from rooms.inbound import InboundMessage, process_inbound
from rooms.infra.task_queue import enqueue
from rooms.models import Channel, ChannelBinding, Participant, Room
from rooms.realtime import broadcast as realtime
from rooms.selectors import get_channel, get_room

logger = logging.getLogger(__name__)


def ensure_system_channel(channel_id: str, channel_type: str, name: str) -> Channel:
    """Our own entry-point channels (web chat, API, console) exist on first use."""
    channel, _ = Channel.objects.get_or_create(
        pk=channel_id,
        defaults={"channel_type": channel_type, "category": ChannelCategory.TRANSPORT, "name": name},
    )
    return channel


def fire_hooks_on_commit(trigger: HookTrigger, kind: str, obj_id: Any) -> None:
    from rooms.tasks import fire_hooks_task

    transaction.on_commit(lambda: enqueue(fire_hooks_task, trigger.value, kind, obj_id))


def _record(room_id: str, event_type: str, body: str, **data: Any) -> None:
    process_inbound(
        InboundMessage(
            channel_id=None,
            room_id=room_id,
            event_type=event_type,
            visibility=Visibility.INTERNAL,
            content={"type": "system", "body": body, "code": event_type, "data": data},
        )
    )


def room_create(
    *,
    room_id: str | None = None,
    name: str = "",
    metadata: dict | None = None,
    inactive_after_seconds: int | None = None,
    closed_after_seconds: int | None = None,
    ai_config: dict | None = None,
) -> Room:
    """Create an empty active room."""
    with transaction.atomic():
        fields: dict[str, Any] = dict(
            name=name,
            metadata=metadata or {},
            ai_config=ai_config or {},
            last_activity_at=timezone.now(),
            inactive_after_seconds=inactive_after_seconds,
            closed_after_seconds=closed_after_seconds,
        )
        if room_id:
            if Room.objects.filter(pk=room_id).exists():
                raise Conflict(f"room '{room_id}' already exists", code="room_exists")
            fields["id"] = room_id
        room = Room.objects.create(**fields)
        fire_hooks_on_commit(HookTrigger.ON_ROOM_CREATED, "room", room.id)
        transaction.on_commit(lambda: realtime.announce_room_created(room.id))
    return room


def _locked_room(room_id: str) -> Room:
    room = Room.objects.select_for_update().filter(pk=room_id).first()
    if room is None:
        raise NotFound(f"unknown room '{room_id}'", code="unknown_room")
    return room


def room_pause(*, room_id: str, reason: str = "", now: datetime | None = None) -> Room:
    """Pause an active room; ``now`` stamps ``paused_at`` (the sweeper passes its own clock)."""
    with transaction.atomic():
        room = _locked_room(room_id)
        if room.status != RoomStatus.ACTIVE:
            raise Conflict(f"room is {room.status}, not active", code="invalid_transition")
        _record(room.id, EventType.ROOM_PAUSED, "Room paused" + (f": {reason}" if reason else ""), reason=reason)
        Room.objects.filter(pk=room.id).update(status=RoomStatus.PAUSED, paused_at=now or timezone.now())
        fire_hooks_on_commit(HookTrigger.ON_ROOM_PAUSED, "room", room.id)
    return get_room(room_id)


def room_close(*, room_id: str, reason: str = "", now: datetime | None = None) -> Room:
    """Close a room that is not closed yet; ``now`` stamps ``closed_at``."""
    with transaction.atomic():
        room = _locked_room(room_id)
        if room.status in (RoomStatus.CLOSED, RoomStatus.ARCHIVED):
            raise Conflict(f"room is already {room.status}", code="invalid_transition")
        _record(room.id, EventType.ROOM_CLOSED, "Room closed" + (f": {reason}" if reason else ""), reason=reason)
        Room.objects.filter(pk=room.id).update(status=RoomStatus.CLOSED, closed_at=now or timezone.now())
        fire_hooks_on_commit(HookTrigger.ON_ROOM_CLOSED, "room", room.id)
    return get_room(room_id)


def room_reopen(*, room_id: str) -> Room:
    with transaction.atomic():
        room = _locked_room(room_id)
        if room.status == RoomStatus.ACTIVE:
            raise Conflict("room is already active", code="invalid_transition")
        Room.objects.filter(pk=room.id).update(
            status=RoomStatus.ACTIVE, paused_at=None, closed_at=None, last_activity_at=timezone.now()
        )
        _record(room.id, EventType.ROOM_REOPENED, "Room reopened")
    return get_room(room_id)


def channel_attach(
    *,
    room_id: str,
    channel_id: str,
    address: str = "",
    access: str = Access.READ_WRITE,
    muted: bool = False,
    visibility: str = Visibility.ALL,
    metadata: dict | None = None,
    display_name: str = "",
) -> ChannelBinding:
    """Bind a channel to a room (for a transport, at a recipient ``address``)."""
    if access not in Access.values:
        raise InvalidInput(f"unknown access '{access}'")
    channel = get_channel(channel_id)
    # E.164 on phone-number channels, so this binding and the sender's
    # messages meet in one room however the number was typed.
    address = normalize_channel_address(channel.channel_type, channel.config, (address or "").strip())
    with transaction.atomic():
        room = _locked_room(room_id)
        if ChannelBinding.objects.filter(room=room, channel=channel, address=address).exists():
            raise Conflict(f"channel '{channel_id}' is already attached here", code="already_attached")
        participant = None
        if channel.category == ChannelCategory.TRANSPORT and address:
            participant = Participant.objects.create(
                room=room, channel=channel, address=address, display_name=display_name or address
            )
        binding = ChannelBinding.objects.create(
            room=room,
            channel=channel,
            category=channel.category,
            address=address,
            access=access,
            muted=muted,
            visibility=visibility,
            metadata=metadata or {},
            participant=participant,
        )
        _record(room.id, EventType.CHANNEL_ATTACHED, f"Channel {channel_id} attached", channel_id=channel_id, address=address)
        fire_hooks_on_commit(HookTrigger.ON_CHANNEL_ATTACHED, "binding", binding.id)
    return binding


def _binding(room_id: str, channel_id: str, address: str | None) -> ChannelBinding:
    qs = ChannelBinding.objects.select_for_update().filter(room_id=room_id, channel_id=channel_id)
    if address is not None:
        qs = qs.filter(address=address)
    binding = qs.order_by("id").first()
    if binding is None:
        raise NotFound(f"channel '{channel_id}' is not attached to room '{room_id}'", code="not_attached")
    return binding


def channel_detach(*, room_id: str, channel_id: str, address: str | None = None) -> None:
    with transaction.atomic():
        _locked_room(room_id)
        binding = _binding(room_id, channel_id, address)
        binding_id = binding.id
        _record(
            room_id, EventType.CHANNEL_DETACHED, f"Channel {channel_id} detached", channel_id=channel_id, address=binding.address
        )
        binding.delete()
        fire_hooks_on_commit(
            HookTrigger.ON_CHANNEL_DETACHED, "detached", {"room_id": room_id, "channel_id": channel_id, "binding_id": binding_id}
        )


def _set_binding(room_id: str, channel_id: str, address: str | None, **changes: Any) -> ChannelBinding:
    with transaction.atomic():
        _locked_room(room_id)
        binding = _binding(room_id, channel_id, address)
        for k, v in changes.items():
            setattr(binding, k, v)
        binding.save(update_fields=list(changes))
        return binding


def channel_mute(*, room_id: str, channel_id: str, address: str | None = None) -> ChannelBinding:
    """Silence a binding: it neither receives nor speaks into the room until unmuted."""
    with transaction.atomic():
        binding = _set_binding(room_id, channel_id, address, muted=True)
        _record(room_id, EventType.CHANNEL_MUTED, f"Channel {channel_id} muted", channel_id=channel_id)
        fire_hooks_on_commit(HookTrigger.ON_CHANNEL_MUTED, "binding", binding.id)
    return binding


def channel_unmute(*, room_id: str, channel_id: str, address: str | None = None) -> ChannelBinding:
    with transaction.atomic():
        binding = _set_binding(room_id, channel_id, address, muted=False)
        _record(room_id, EventType.CHANNEL_UNMUTED, f"Channel {channel_id} unmuted", channel_id=channel_id)
        fire_hooks_on_commit(HookTrigger.ON_CHANNEL_UNMUTED, "binding", binding.id)
    return binding


def channel_set_access(*, room_id: str, channel_id: str, access: str, address: str | None = None) -> ChannelBinding:
    if access not in Access.values:
        raise InvalidInput(f"unknown access '{access}'")
    with transaction.atomic():
        binding = _set_binding(room_id, channel_id, address, access=access)
        _record(
            room_id,
            EventType.CHANNEL_UPDATED,
            f"Channel {channel_id} access set to {access}",
            channel_id=channel_id,
            access=access,
        )
    return binding


def sweep_room_timers(*, now: datetime | None = None) -> list[tuple[str, str]]:
    """Pause rooms idle past their inactive timer; close rooms paused past their closed timer.

    Returns the transitions made as (room_id, new_status). Safe to run from
    several processes: each transition re-checks under the room's lock.
    """
    now = now or timezone.now()
    done: list[tuple[str, str]] = []
    idle = Room.objects.filter(status=RoomStatus.ACTIVE, inactive_after_seconds__isnull=False).values_list(
        "id", "inactive_after_seconds", "last_activity_at"
    )
    for room_id, seconds, last in idle.iterator(chunk_size=500):
        if last is not None and last + timedelta(seconds=seconds) <= now:
            try:
                with transaction.atomic():
                    room = _locked_room(room_id)
                    fresh = room.last_activity_at
                    if room.status == RoomStatus.ACTIVE and fresh and fresh + timedelta(seconds=seconds) <= now:
                        # Stamped with the sweep's clock, so the closed timer
                        # counts from the same time the pause was decided at.
                        room_pause(room_id=room_id, reason="inactive", now=now)
                        done.append((room_id, RoomStatus.PAUSED))
            except Conflict:
                continue
    paused = Room.objects.filter(status=RoomStatus.PAUSED, closed_after_seconds__isnull=False).values_list(
        "id", "closed_after_seconds", "paused_at", "last_activity_at"
    )
    for room_id, seconds, paused_at, last in paused.iterator(chunk_size=500):
        since = paused_at or last
        if since is not None and since + timedelta(seconds=seconds) <= now:
            try:
                with transaction.atomic():
                    # A message may have woken the room since the query.
                    room = _locked_room(room_id)
                    since = room.paused_at or room.last_activity_at
                    if room.status == RoomStatus.PAUSED and since and since + timedelta(seconds=seconds) <= now:
                        room_close(room_id=room_id, reason="timeout", now=now)
                        done.append((room_id, RoomStatus.CLOSED))
            except Conflict:
                continue
    if done:
        logger.info("room timers: %d transitions", len(done))
    return done


def participant_mark_read(*, participant_id: str, seq: int) -> bool:
    """Move the participant's read marker forward to ``seq`` and tell the room (a read receipt).

    The marker never moves backwards: an older or equal ``seq`` changes nothing
    and publishes nothing (returns False). A ``seq`` beyond the room's last
    event is refused. The conditional UPDATE makes concurrent receipts from
    several sockets safe: the highest wins.
    """
    if type(seq) is not int or seq < 1:
        raise InvalidInput("seq must be a positive integer", code="invalid_seq")
    row = Participant.objects.filter(pk=participant_id).values("room_id", "room__last_seq").first()
    if row is None:
        raise NotFound(f"unknown participant '{participant_id}'", code="unknown_participant")
    if seq > row["room__last_seq"]:
        raise InvalidInput(f"seq {seq} is beyond the room's last event", code="invalid_seq")
    with transaction.atomic():
        moved = Participant.objects.filter(pk=participant_id, last_read_seq__lt=seq).update(last_read_seq=seq)
        if moved:
            room_id = row["room_id"]
            transaction.on_commit(lambda: realtime.publish_read_receipt(room_id, participant_id, seq))
    return bool(moved)
