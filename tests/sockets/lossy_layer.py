"""Channel layers that lose chosen room event frames, as a full or failing layer does.

The project's own layer classes (in-memory or Redis, whichever the pass
configures) with one change: ``group_send`` to a room's group skips the event
frames whose ``seq`` is in ``drop_seqs`` (set in the layer's CONFIG). Nothing
of ours is replaced: the publisher, the room hub and the socket run as they
do in production, over a layer that misbehaves the way channels-redis does
when an inbox is full (it skips the member, the sender never knows).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from rooms.realtime.channel_layer import RoomKitInMemoryChannelLayer, RoomKitRedisChannelLayer


class _Lossy:
    def __init__(self, *args: Any, drop_seqs: list[int] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.drop_seqs = set(drop_seqs)
        self.dropped: list[int] = []

    def _lost(self, group: str, message: dict) -> bool:
        if group.startswith("room.") and message.get("seq") in self.drop_seqs:
            self.dropped.append(message["seq"])
            return True
        return False

    async def group_send(self, group: str, message: dict) -> None:
        if not self._lost(group, message):
            await super().group_send(group, message)

    async def group_send_many(self, group: str, messages: list[dict], **kwargs: Any) -> None:
        kept = [m for m in messages if not self._lost(group, m)]
        if kept:
            await super().group_send_many(group, kept, **kwargs)


class LossyInMemoryChannelLayer(_Lossy, RoomKitInMemoryChannelLayer):
    group_send_many = None  # the in-memory layer has none: the publisher sends one by one


class LossyRedisChannelLayer(_Lossy, RoomKitRedisChannelLayer):
    pass


def layer_settings(**config: Any) -> dict[str, Any]:
    """``CHANNEL_LAYERS`` like the configured one (same backend kind and config), with ``config`` added."""
    current = settings.CHANNEL_LAYERS["default"]
    lossy = "drop_seqs" in config
    if current["BACKEND"].endswith("RedisChannelLayer"):
        backend = "tests.sockets.lossy_layer.LossyRedisChannelLayer" if lossy else current["BACKEND"]
    else:
        backend = "tests.sockets.lossy_layer.LossyInMemoryChannelLayer" if lossy else current["BACKEND"]
    return {"default": {"BACKEND": backend, "CONFIG": {**current.get("CONFIG", {}), **config}}}
