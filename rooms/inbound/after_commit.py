"""Work the inbound path owes once its transaction commits: fan-out, enqueues, hooks, caches."""

from __future__ import annotations

from dataclasses import dataclass, field

from rooms import hooks, registries
from rooms.enums import (
    EventStatus,
    Visibility,
)
from rooms.hooks import HookTrigger
from rooms.inbound import route_cache
from rooms.inbound.messages import InboundMessage  # noqa: F401
from rooms.models import ChannelBinding, RoomEvent
from rooms.realtime import broadcast as realtime
from rooms.serializers import event_to_dict


@dataclass
class AfterCommit:
    """Work owed once the transaction commits; nothing here touches the rows."""

    event: RoomEvent | None = None
    display_name: str = ""
    public: bool = False
    delivery_ids: list[int] = field(default_factory=list)
    # Planned as failed (nothing to send): only their status hooks are owed.
    failed_delivery_ids: list[int] = field(default_factory=list)
    intelligence: list[tuple[str, int]] = field(default_factory=list)  # (channel_type, binding_id)
    room_created: str | None = None
    identified_participant: str | None = None
    task_ids: list[str] = field(default_factory=list)
    observation_ids: list[str] = field(default_factory=list)
    extra_events: list[RoomEvent] = field(default_factory=list)
    # Cache entries to keep once the data they describe is committed.
    routes: list[tuple[tuple, route_cache.Route]] = field(default_factory=list)
    bindings: tuple[str, int, list[ChannelBinding]] | None = None

    def run(self) -> None:
        from rooms.infra.task_queue import enqueue
        from rooms.tasks import fire_hooks_task

        for key, route in self.routes:
            route_cache.put_route(key, route)
        if self.bindings is not None:
            route_cache.store_room_bindings(*self.bindings)

        for ev, public in ([(self.event, self.public)] if self.event else []) + [(e, False) for e in self.extra_events]:
            realtime.publish_event(
                ev.room_id,
                event_to_dict(ev, display_name=self.display_name if ev is self.event else ""),
                public=public or (ev is not self.event and ev.visibility != Visibility.INTERNAL),
            )
        if self.delivery_ids:
            registries.dispatch_deliveries(self.delivery_ids)
        for channel_type, binding_id in self.intelligence:
            handler = registries.intelligence_handler(channel_type)
            if handler is not None:
                handler(self.event.id, binding_id)
        if self.room_created:
            realtime.announce_room_created(self.room_created)
            enqueue(fire_hooks_task, HookTrigger.ON_ROOM_CREATED.value, "room", self.room_created)
        if self.identified_participant:
            enqueue(fire_hooks_task, HookTrigger.ON_PARTICIPANT_IDENTIFIED.value, "participant", self.identified_participant)
        for task_id in self.task_ids:
            enqueue(fire_hooks_task, HookTrigger.ON_TASK_CREATED.value, "task", task_id)
        for delivery_id in self.failed_delivery_ids:
            enqueue(fire_hooks_task, HookTrigger.ON_DELIVERY_STATUS.value, "delivery", delivery_id)
        for obs_id in self.observation_ids:
            enqueue(fire_hooks_task, HookTrigger.ON_OBSERVATION.value, "observation", obs_id)
        if (
            self.event is not None
            and self.event.status == EventStatus.DELIVERED
            and hooks.registry.has(HookTrigger.AFTER_BROADCAST)
        ):
            enqueue(fire_hooks_task, HookTrigger.AFTER_BROADCAST.value, "event", self.event.id)
