"""The conversation router: a BEFORE_BROADCAST hook that marks which agent answers a message.

It writes ``event.metadata["route_to"]`` (an agent id, or None when no agent
should answer) and ``route_reason``, and the chosen agent's generation row in
the same transaction as the event; after commit the intelligence handler
enqueues it (only for that agent's binding). Sticky: the room's active agent keeps the conversation; rules
(per pipeline stage: intents, channel types) and the current phase decide for
a room without one, else the default agent. Messages from agents and from
operators are not routed to agents, and nothing is while a human holds the room.
"""

from __future__ import annotations

from agents.intelligence import PlannedReply, remember_plan
from agents.orchestration import ConversationState, route
from agents.selectors import agent_get, pipeline_for
from agents.services import conversation_activate, generation_plan
from agents.statements import conversation_state
from rooms.content.kinds import content_text
from rooms.enums import ChannelCategory, ChannelType, EventType
from rooms.hooks import HookContext, HookResult, HookTrigger, hook
from rooms.inbound.visibility import can_receive, visible_to
from rooms.models import RoomEvent

_NOT_ROUTED_SOURCES = frozenset({ChannelType.AI, ChannelType.CONSOLE})
# Events with no channel (system records) or from agents and operators never
# reach the function: the registry's filter skips them.
_ROUTED_TYPES = [t for t in ChannelType.values if t not in _NOT_ROUTED_SOURCES]


@hook(
    HookTrigger.BEFORE_BROADCAST,
    name="agents.conversation_router",
    priority=1000,
    channel_types=_ROUTED_TYPES,
    # Its generation row and state change are writes in the inbound transaction:
    # a retried transaction must plan them again.
    transactional=True,
)
def conversation_router(event: RoomEvent, ctx: HookContext) -> HookResult | None:
    if event.type != EventType.MESSAGE or ctx.channel_type in _NOT_ROUTED_SOURCES or ctx.channel_id is None:
        return None
    bound = [
        b.channel_id
        for b in ctx.bindings
        if b.category == ChannelCategory.INTELLIGENCE
        and not b.muted
        and can_receive(b.access)
        and visible_to(event.visibility, channel_id=b.channel_id, category=ChannelCategory.INTELLIGENCE)
        # Only configured, enabled agents answer: another intelligence channel is not ours to drive.
        and agent_get(b.channel_id) is not None
    ]
    if not bound:
        return None
    # The room row is locked by this transaction (the seq was just taken), so
    # this reads the state as it is now. One column, not ``ctx.room``: on the
    # cached inbound path that would load the whole row as a model.
    state = ConversationState.from_dict(conversation_state(event.room_id))
    pipeline = pipeline_for(state.pipeline_id, bound)
    decision = route(
        state=state,
        bound_agents=bound,
        pipeline=pipeline,
        channel_type=ctx.channel_type,
        text=content_text(event.content or {}),
        intent=(event.metadata or {}).get("intent"),
    )
    if decision.agent_id:
        # We run inside the inbound transaction, under the room's row lock: the
        # state and the generation row commit with the event, or not at all.
        if not state.active_agent_id and not state.human:
            conversation_activate(
                room_id=event.room_id,
                agent_id=decision.agent_id,
                phase=decision.phase,
                pipeline_id=pipeline.id if pipeline else None,
            )
        binding_id = next(
            b.id for b in ctx.bindings if b.channel_id == decision.agent_id and b.category == ChannelCategory.INTELLIGENCE
        )
        gen_id, steering = generation_plan(room_id=event.room_id, agent_id=decision.agent_id, event_id=event.id)
        remember_plan(event.id, PlannedReply(binding_id, gen_id, steering, event.room_id, decision.agent_id))
    return HookResult.modify(metadata={"route_to": decision.agent_id, "route_reason": decision.reason})
