"""The core's way into the agents: called after commit for each agent bound to a room that got an event.

The router (``agents.hooks``) decided inside the inbound transaction who
answers and wrote that agent's generation row there; it leaves a note here
(this process, keyed by event id) so that the after-commit call needs no query
to know which binding answers and which row to enqueue.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

from agents.models import Generation, GenerationStatus
from agents.services import generation_dispatch, generation_request
from rooms.models import ChannelBinding, RoomEvent

logger = logging.getLogger(__name__)

# Notes of transactions that rolled back are never read: keep a bounded number.
MAX_PLANS = 10_000


@dataclass(frozen=True)
class PlannedReply:
    binding_id: int
    generation_id: str
    steering: bool
    # Where and by whom, so the room hears "thinking…" without a query.
    room_id: str = ""
    agent_id: str = ""


_plans: OrderedDict[str, PlannedReply] = OrderedDict()
_lock = threading.Lock()


def remember_plan(event_id: str, plan: PlannedReply) -> None:
    with _lock:
        _plans[event_id] = plan
        while len(_plans) > MAX_PLANS:
            _plans.popitem(last=False)


def _take_plan(event_id: str, binding_id: int) -> PlannedReply | None | bool:
    """The plan if it is this binding's (removed); False if the event has a plan for another binding."""
    with _lock:
        plan = _plans.get(event_id)
        if plan is None:
            return None
        if plan.binding_id != binding_id:
            return False
        return _plans.pop(event_id)


def on_room_event(event_id: str, binding_id: int) -> None:
    """Enqueue the reply the router planned for this binding's agent (``metadata["route_to"]``).

    Events the router did not route (agents' own replies, system events, rooms
    a human operator holds) carry no ``route_to`` and get nothing.
    """
    try:
        plan = _take_plan(event_id, binding_id)
        if plan is False:
            return
        if plan is not None:
            generation_dispatch(plan.generation_id, steering=plan.steering, room_id=plan.room_id, agent_id=plan.agent_id)
            return
        _without_plan(event_id, binding_id)
    except Exception:
        # Runs inside the inbound path's on-commit work: never break the caller.
        # The row (if any) stays pending; the generation sweeper runs it.
        logger.exception("could not request a reply to event %s", event_id)


def _without_plan(event_id: str, binding_id: int) -> None:
    """The note was evicted (or the router ran elsewhere): read the decision from the rows."""
    row = RoomEvent.objects.filter(pk=event_id).values_list("room_id", "metadata").first()
    if row is None:
        return
    route_to = (row[1] or {}).get("route_to")
    if not route_to:
        return
    channel_id = ChannelBinding.objects.filter(pk=binding_id).values_list("channel_id", flat=True).first()
    if channel_id != route_to:
        return
    existing = Generation.objects.filter(trigger_event_id=event_id, agent_id=route_to).values_list("id", "status").first()
    if existing is None:
        generation_request(room_id=row[0], agent_id=route_to, event_id=event_id)
    elif existing[1] in (GenerationStatus.PENDING, GenerationStatus.STEERING):
        generation_dispatch(existing[0], steering=existing[1] == GenerationStatus.STEERING, room_id=row[0], agent_id=route_to)
