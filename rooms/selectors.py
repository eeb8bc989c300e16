"""Reads. Cached where the hot path would otherwise ask the same thing often."""

from __future__ import annotations

import threading
import time

from django.db.models import Prefetch
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from rooms.errors import NotFound
from rooms.models import Channel, ChannelBinding, Participant, Room, RoomEvent

# Channels change rarely and every inbound message needs one: keep each for a
# couple of seconds per process. A save in this process drops it at once;
# other processes see the change within the TTL.
CHANNEL_CACHE_TTL = 2.0
_channel_cache: dict[str, tuple[float, Channel]] = {}
_channel_lock = threading.Lock()


def get_channel(channel_id: str) -> Channel:
    hit = _channel_cache.get(channel_id)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    # One thread reloads while the others wait for its answer: when the entry
    # expires under load, every request thread would otherwise query at once.
    with _channel_lock:
        hit = _channel_cache.get(channel_id)
        now = time.monotonic()
        if hit and hit[0] > now:
            return hit[1]
        channel = Channel.objects.filter(pk=channel_id).first()
        if channel is None:
            raise NotFound(f"unknown channel '{channel_id}'", code="unknown_channel")
        _channel_cache[channel_id] = (now + CHANNEL_CACHE_TTL, channel)
    return channel


@receiver(post_save, sender=Channel)
@receiver(post_delete, sender=Channel)
def _forget_channel(sender: type, instance: Channel, **kwargs: object) -> None:
    _channel_cache.pop(instance.pk, None)


def clear_channel_cache() -> None:
    _channel_cache.clear()


def get_room(room_id: str) -> Room:
    room = Room.objects.filter(pk=room_id).first()
    if room is None:
        raise NotFound(f"unknown room '{room_id}'", code="unknown_room")
    return room


def get_room_detail(room_id: str) -> Room:
    """A room with its bindings and participants: three queries whatever their number.

    Ordered, so the API lists them the same way on every database.
    """
    room = (
        Room.objects.prefetch_related(
            Prefetch("bindings", queryset=ChannelBinding.objects.order_by("id")),
            Prefetch("participants", queryset=Participant.objects.order_by("joined_at", "id")),
        )
        .filter(pk=room_id)
        .first()
    )
    if room is None:
        raise NotFound(f"unknown room '{room_id}'", code="unknown_room")
    return room


def room_list(*, status: str | None = None, offset: int = 0, limit: int = 50) -> tuple[list[Room], int]:
    """A page of rooms, most recently active first, optionally of one ``status``, and how many there are."""
    qs = Room.objects.all().order_by("-last_activity_at", "-created_at")
    if status:
        qs = qs.filter(status=status)
    return list(qs[offset : offset + limit]), qs.count()


def room_events(room_id: str, *, after_seq: int = 0, limit: int = 100) -> list[RoomEvent]:
    return list(
        RoomEvent.objects.filter(room_id=room_id, seq__gt=after_seq).select_related("source_participant").order_by("seq")[:limit]
    )


def room_bindings(room_id: str) -> list[ChannelBinding]:
    return list(ChannelBinding.objects.filter(room_id=room_id).select_related("channel"))


def provider_message_stored(*, channel_id: str, provider_message_id: str) -> bool:
    """Whether the channel already stored the vendor's message with this id (a vendor's retry, or a replay).

    An adapter asks before fetching a message's attachments: a repeat stores
    nothing new, so its media need not be downloaded again.
    """
    return RoomEvent.objects.filter(source_channel_id=channel_id, provider_message_id=provider_message_id).exists()
