"""Celery tasks of the core: they take ids, load rows and call a service."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from rooms import hooks
from rooms.hooks import HookContext, HookTrigger
from rooms.models import ChannelBinding, Delivery, Observation, Participant, Room, RoomEvent, Task

logger = logging.getLogger(__name__)

_LOADERS = {
    "event": lambda pk: RoomEvent.objects.select_related("source_channel", "room").filter(pk=pk).first(),
    "room": lambda pk: Room.objects.filter(pk=pk).first(),
    "participant": lambda pk: Participant.objects.filter(pk=pk).first(),
    "task": lambda pk: Task.objects.filter(pk=pk).first(),
    "observation": lambda pk: Observation.objects.filter(pk=pk).first(),
    "delivery": lambda pk: Delivery.objects.select_related("channel").filter(pk=pk).first(),
    "binding": lambda pk: ChannelBinding.objects.select_related("channel").filter(pk=pk).first(),
}


def _context(kind: str, obj: Any) -> HookContext:
    if kind == "event":
        ch = obj.source_channel
        return HookContext(
            room_id=obj.room_id,
            channel_id=ch.id if ch else None,
            channel_type=ch.channel_type if ch else None,
            direction=obj.direction,
            room=obj.room,
        )
    if kind == "binding":
        return HookContext(room_id=obj.room_id, channel_id=obj.channel_id, channel_type=obj.channel.channel_type)
    if kind == "room":
        return HookContext(room_id=obj.id, room=obj)
    if isinstance(obj, dict):
        return HookContext(room_id=obj.get("room_id"), channel_id=obj.get("channel_id"))
    return HookContext(room_id=getattr(obj, "room_id", None))


@shared_task(name="rooms.tasks.fire_hooks_task", ignore_result=True)
def fire_hooks_task(trigger: str, kind: str, obj_id: Any) -> None:
    """Run the hooks of a notification trigger for one stored object."""
    loader = _LOADERS.get(kind)
    obj = loader(obj_id) if loader else obj_id
    if obj is None:
        logger.info("hooks %s: %s %s no longer exists", trigger, kind, obj_id)
        return
    hooks.fire(HookTrigger(trigger), obj, _context(kind, obj))


@shared_task(name="rooms.tasks.sweep_rooms_task", ignore_result=True)
def sweep_rooms_task() -> int:
    from rooms.console.inbox import wake_snoozed
    from rooms.services import sweep_room_timers

    # Room timers (pause, close) and the inbox's snoozes that ran out.
    return len(sweep_room_timers()) + len(wake_snoozed())
