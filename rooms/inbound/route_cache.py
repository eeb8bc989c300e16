"""Per-process cache of how messages reach a room, checked against the database.

The hot path would otherwise re-read, for every message, the sender's binding,
participant and the room's bindings. Each room carries ``routing_version``,
bumped (by signal, in the same transaction) whenever one of its bindings or
participants changes. The inbound path reads the version in the very statement
that locks the room and takes the seq; a cached entry is used only if its
version matches, so a stale cache can cost a retry but never a wrong route.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from django.db.models import F
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from rooms.models import ChannelBinding, Participant, Room

MAX_ENTRIES = 20_000


@dataclass(frozen=True)
class Route:
    room_id: str
    binding: ChannelBinding
    participant_id: str | None
    participant_name: str
    version: int


class _LRU:
    def __init__(self, size: int) -> None:
        self._data: OrderedDict = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            if len(self._data) > self._size:
                self._data.popitem(last=False)

    def pop(self, key) -> None:
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


_routes = _LRU(MAX_ENTRIES)
_bindings = _LRU(MAX_ENTRIES)


def route_key(room_id: str | None, channel_id: str, sender: str, participant_id: str | None) -> tuple:
    return (room_id or "", channel_id, sender, participant_id or "")


def get_route(key: tuple) -> Route | None:
    return _routes.get(key)


def put_route(key: tuple, route: Route) -> None:
    _routes.put(key, route)


def forget_route(key: tuple) -> None:
    _routes.pop(key)


def room_bindings(room_id: str, version: int, *, store: bool = True) -> list[ChannelBinding]:
    """The room's bindings (with channels) as of ``version``.

    Inside a transaction pass ``store=False`` and call ``store_room_bindings``
    after commit: a rolled-back read must never be cached.
    """
    hit = _bindings.get(room_id)
    if hit is not None and hit[0] == version:
        return hit[1]
    bindings = list(ChannelBinding.objects.filter(room_id=room_id).select_related("channel").order_by("id"))
    if store:
        _bindings.put(room_id, (version, bindings))
    return bindings


def store_room_bindings(room_id: str, version: int, bindings: list[ChannelBinding]) -> None:
    _bindings.put(room_id, (version, bindings))


def clear() -> None:
    _routes.clear()
    _bindings.clear()


def bump_routing_version(room_id: str) -> None:
    Room.objects.filter(pk=room_id).update(routing_version=F("routing_version") + 1)


@receiver(post_save, sender=ChannelBinding)
@receiver(post_delete, sender=ChannelBinding)
@receiver(post_save, sender=Participant)
@receiver(post_delete, sender=Participant)
def _bump_on_change(sender: type, instance: ChannelBinding | Participant, **kwargs: object) -> None:
    if kwargs.get("raw"):
        return
    bump_routing_version(instance.room_id)
    if sender is ChannelBinding and kwargs.get("created") and instance.address:
        # The same address bound in another room changes where that sender's
        # messages go (the newest room wins): routes cached for the older
        # rooms must fail their check too.
        Room.objects.filter(bindings__channel_id=instance.channel_id, bindings__address=instance.address).exclude(
            pk=instance.room_id
        ).update(routing_version=F("routing_version") + 1)
