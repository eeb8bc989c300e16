"""Writes of the agents app: agents and their channels, conversation state, generations.

Every conversation-state change happens under the room's row lock inside the
service's own transaction, is recorded as a system event through the inbound
path, and fires its hooks (``ON_HANDOFF``, ``ON_HANDOFF_REJECTED``,
``ON_PHASE_TRANSITION``) after commit.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from agents import statements
from agents.models import Agent, Generation, GenerationKind, GenerationStatus
from agents.orchestration import HUMAN, ConversationState, handoff_targets
from agents.selectors import agent_get, pipeline_for, room_agent_ids
from rooms.enums import ChannelCategory, ChannelType, EventType, Visibility
from rooms.errors import Conflict, InvalidInput, NotFound
from rooms.hooks import HookTrigger
from rooms.inbound import InboundMessage, process_inbound
from rooms.infra.task_queue import enqueue
from rooms.models import Channel, Room
from rooms.realtime import broadcast as realtime
from rooms.selectors import clear_channel_cache

logger = logging.getLogger(__name__)


# --- agents --------------------------------------------------------------------------


def agent_save(agent: Agent, *, api_key: str | None = None, fallback_api_key: str | None = None) -> Agent:
    """Save ``agent`` with its intelligence channel (same id, type ``ai``); keys are stored encrypted on the channel."""
    with transaction.atomic():
        channel = Channel.objects.select_for_update().filter(pk=agent.id).first()
        if channel is None:
            channel = Channel(id=agent.id)
        elif channel.channel_type != ChannelType.AI:
            raise Conflict(f"channel '{agent.id}' exists and is not an AI channel", code="channel_exists")
        channel.name = agent.name or agent.id
        channel.channel_type = ChannelType.AI
        channel.category = ChannelCategory.INTELLIGENCE
        channel.provider = agent.provider
        channel.creates_rooms = False
        channel.enabled = agent.enabled
        secrets = {k: v for k, v in {"api_key": api_key, "fallback_api_key": fallback_api_key}.items() if v}
        if secrets:
            channel.set_secrets(secrets)
        channel.save()
        agent.channel = channel
        agent.save()
    clear_channel_cache()
    return agent


# --- conversation state --------------------------------------------------------------


def _locked_room(room_id: str) -> Room:
    room = Room.objects.select_for_update().filter(pk=room_id).first()
    if room is None:
        raise NotFound(f"unknown room '{room_id}'", code="unknown_room")
    return room


def _save_state(room_id: str, state: ConversationState) -> None:
    Room.objects.filter(pk=room_id).update(conversation_state=state.to_dict())


def _record(room_id: str, event_type: str, body: str, /, visibility: str = Visibility.INTERNAL, **data: Any) -> str | None:
    """A system event through the inbound path: operators' bookkeeping (internal) unless ``visibility`` says otherwise."""
    result = process_inbound(
        InboundMessage(
            channel_id=None,
            room_id=room_id,
            event_type=event_type,
            visibility=visibility,
            content={"type": "system", "body": body, "code": event_type, "data": data},
        )
    )
    return result.event_id


def _announce_operator(room_id: str, event_type: str, name: str) -> str | None:
    """Tell the customer, in words, that a person joined or left: a system event every transport shows.

    The internal handoff event says what happened for operators; this one is
    the customer's, so it carries the operator's display name only (never the
    login), and the agents do not read it as part of the conversation.
    """
    verb = "joined" if event_type == EventType.PARTICIPANT_JOINED else "left"
    return _record(room_id, event_type, f"{name} {verb} the conversation", visibility=Visibility.TRANSPORT, name=name)


def _fire_on_commit(trigger: HookTrigger, payload: dict[str, Any]) -> None:
    from rooms.tasks import fire_hooks_task

    transaction.on_commit(lambda: enqueue(fire_hooks_task, trigger.value, "orchestration", payload))


def _now_iso() -> str:
    return timezone.now().isoformat().replace("+00:00", "Z")


def conversation_state_get(room_id: str) -> ConversationState:
    """The room's conversation state (phase, active agent, handoffs, context)."""
    state = Room.objects.filter(pk=room_id).values_list("conversation_state", flat=True).first()
    if state is None:
        raise NotFound(f"unknown room '{room_id}'", code="unknown_room")
    return ConversationState.from_dict(state)


def conversation_activate(*, room_id: str, agent_id: str, phase: str | None, pipeline_id: str | None) -> ConversationState:
    """Make ``agent_id`` the room's active agent when none is (the router's first decision)."""
    with transaction.atomic():
        room = _locked_room(room_id)
        state = ConversationState.from_dict(room.conversation_state)
        if state.active_agent_id or state.human:
            return state
        state.active_agent_id = agent_id
        state.pipeline_id = state.pipeline_id or pipeline_id
        if phase and state.phase != phase:
            state.phase_history.append(
                {"from_phase": state.phase, "to_phase": phase, "reason": "start", "at": _now_iso(), "agent_id": agent_id}
            )
            state.phase = phase
        _save_state(room_id, state)
    return state


@dataclass(frozen=True)
class HandoffResult:
    accepted: bool
    target: str
    reason: str = ""
    phase: str | None = None
    event_id: str | None = None

    def as_tool_result(self) -> dict[str, Any]:
        if self.accepted:
            return {"accepted": True, "target": self.target, "phase": self.phase}
        return {"accepted": False, "target": self.target, "error": self.reason}


def conversation_handoff(
    *,
    room_id: str,
    from_agent_id: str,
    target: str,
    reason: str = "",
    summary: str = "",
    next_phase: str | None = None,
    greet: bool = True,
) -> HandoffResult:
    """Hand the room from ``from_agent_id`` to another agent or to a human (``"human"``).

    Refused (``ON_HANDOFF_REJECTED``, nothing changes) unless the caller is the
    active agent and the target is an allowed transition. On success the state
    moves (active/previous agent, count, phase and its history, the handoff
    summary for the next agent's memory), a ``handoff`` event is recorded, and
    after commit ``ON_HANDOFF`` (and ``ON_PHASE_TRANSITION``) fire and the new
    agent greets the user when its pipeline says so (``greet=False``: the
    caller requests the greeting itself with ``handoff_greeting``, as the
    generation engine does once the handing-off agent's last words are posted).
    """
    with transaction.atomic():
        room = _locked_room(room_id)
        state = ConversationState.from_dict(room.conversation_state)
        bound = room_agent_ids(room_id)
        pipeline = pipeline_for(state.pipeline_id, bound)
        allowed = handoff_targets(state=state, pipeline=pipeline, from_agent=from_agent_id, bound_agents=bound)
        refusal = ""
        if state.human:
            refusal = "a human operator has this conversation"
        elif state.active_agent_id and state.active_agent_id != from_agent_id:
            refusal = f"only the active agent ({state.active_agent_id}) may hand off"
        elif target not in allowed:
            refusal = f"handoff to '{target}' is not allowed; allowed: {', '.join(allowed) or 'none'}"
        new_phase = state.phase
        if not refusal and target != HUMAN and pipeline is not None:
            target_stage = pipeline.stage_for_phase(next_phase) if next_phase else pipeline.stage_for_agent(target)
            if next_phase and (target_stage is None or target_stage.agent_id != target):
                refusal = f"phase '{next_phase}' is not served by '{target}'"
            elif target_stage is not None:
                new_phase = target_stage.phase
        payload = {"room_id": room_id, "from_agent": from_agent_id, "to_agent": target, "reason": reason, "summary": summary}
        if refusal:
            event_id = _record(
                room_id,
                EventType.SYSTEM,
                f"Handoff from {from_agent_id} to {target} refused: {refusal}",
                **payload,
                refusal=refusal,
            )
            _fire_on_commit(HookTrigger.ON_HANDOFF_REJECTED, {**payload, "refusal": refusal, "event_id": event_id})
            return HandoffResult(False, target, refusal)
        old_phase = state.phase
        state.previous_agent_id = from_agent_id
        state.handoff_count += 1
        state.pipeline_id = state.pipeline_id or (pipeline.id if pipeline else None)
        state.context["handoff"] = {
            "from_agent": from_agent_id,
            "to_agent": target,
            "reason": reason,
            "summary": summary,
            "at": _now_iso(),
        }
        if target == HUMAN:
            state.active_agent_id = None
            state.human = {"status": "waiting", "operator": None, "since": _now_iso()}
        else:
            state.active_agent_id = target
        if new_phase != old_phase:
            state.phase = new_phase
            state.phase_history.append(
                {"from_phase": old_phase, "to_phase": new_phase, "reason": reason, "at": _now_iso(), "agent_id": target}
            )
        _save_state(room_id, state)
        body = (
            f"Handed over to a human operator by {from_agent_id}"
            if target == HUMAN
            else f"Handed over from {from_agent_id} to {target}"
        ) + (f": {reason}" if reason else "")
        event_id = _record(room_id, EventType.HANDOFF, body, **payload, phase=new_phase)
        _fire_on_commit(HookTrigger.ON_HANDOFF, {**payload, "phase": new_phase, "event_id": event_id})
        if new_phase != old_phase:
            _record(
                room_id, EventType.PHASE_TRANSITION, f"Phase {old_phase} → {new_phase}", from_phase=old_phase, to_phase=new_phase
            )
            _fire_on_commit(
                HookTrigger.ON_PHASE_TRANSITION,
                {"room_id": room_id, "from_phase": old_phase, "to_phase": new_phase, "reason": reason, "agent_id": target},
            )
    result = HandoffResult(True, target, reason, new_phase, event_id)
    if greet:
        handoff_greeting(room_id=room_id, result=result)
    return result


def handoff_greeting(*, room_id: str, result: HandoffResult) -> str | None:
    """After an accepted handoff to an agent, that agent greets the user (when its pipeline greets on handoff)."""
    if not result.accepted or result.target == HUMAN or not result.event_id:
        return None
    pipeline = pipeline_for(conversation_state_get(room_id).pipeline_id, [result.target])
    agent = agent_get(result.target)
    if agent is None or (pipeline is not None and not pipeline.greet_on_handoff) or (pipeline is None and not agent.greeting):
        return None
    return generation_request(room_id=room_id, agent_id=result.target, event_id=result.event_id, kind=GenerationKind.GREETING)


MAX_OPERATOR_NAME = 150


def conversation_takeover(room_id: str, operator: str, *, operator_name: str = "") -> ConversationState:
    """A human operator takes the room: agents stay quiet until ``conversation_handback``.

    ``operator`` is the login (operators' records); ``operator_name`` is what the
    customer reads ("Sam joined the conversation"; the login when not given).
    An operator who already has the room takes it again silently.
    """
    if not operator:
        raise InvalidInput("operator is required")
    name = " ".join((operator_name or "").split())[:MAX_OPERATOR_NAME] or operator
    with transaction.atomic():
        room = _locked_room(room_id)
        state = ConversationState.from_dict(room.conversation_state)
        already = bool(state.human and state.human.get("status") == "active" and state.human.get("operator") == operator)
        previous = state.active_agent_id
        if previous:
            state.previous_agent_id = previous
            state.handoff_count += 1
        state.active_agent_id = None
        state.human = {"status": "active", "operator": operator, "name": name, "since": _now_iso()}
        _save_state(room_id, state)
        payload = {"room_id": room_id, "from_agent": previous, "to_agent": HUMAN, "operator": operator, "reason": "takeover"}
        event_id = _record(room_id, EventType.HANDOFF, f"{operator} took over the conversation", **payload)
        if not already:
            _announce_operator(room_id, EventType.PARTICIPANT_JOINED, name)
        _fire_on_commit(HookTrigger.ON_HANDOFF, {**payload, "event_id": event_id})
    return state


def conversation_handback(room_id: str, agent_id: str) -> ConversationState:
    """Give the room back from the human operator to ``agent_id`` (bound to the room)."""
    with transaction.atomic():
        room = _locked_room(room_id)
        if agent_id not in room_agent_ids(room_id):
            raise InvalidInput(f"agent '{agent_id}' is not attached to this room", code="not_attached")
        state = ConversationState.from_dict(room.conversation_state)
        human = state.human or {}
        operator = human.get("operator")
        state.human = None
        state.active_agent_id = agent_id
        state.handoff_count += 1
        pipeline = pipeline_for(state.pipeline_id, [agent_id])
        stage = pipeline.stage_for_agent(agent_id) if pipeline else None
        if stage is not None and stage.phase != state.phase:
            state.phase_history.append(
                {"from_phase": state.phase, "to_phase": stage.phase, "reason": "handback", "at": _now_iso(), "agent_id": agent_id}
            )
            state.phase = stage.phase
        _save_state(room_id, state)
        payload = {"room_id": room_id, "from_agent": HUMAN, "to_agent": agent_id, "operator": operator, "reason": "handback"}
        event_id = _record(room_id, EventType.HANDOFF, f"Handed back to {agent_id}", **payload)
        if operator and human.get("status") == "active":
            # Only a person who joined leaves: a room merely waiting for one had nobody in it.
            _announce_operator(room_id, EventType.PARTICIPANT_LEFT, human.get("name") or operator)
        _fire_on_commit(HookTrigger.ON_HANDOFF, {**payload, "event_id": event_id})
    return state


def conversation_operator_handoff(*, room_id: str, target: str, operator: str) -> str | None:
    """An operator gives the room to agent ``target``; the agent that handed it off, or None.

    From a human (or from nobody) that is a handback; from an active agent it
    is that agent's handoff, under its transition rules (``Conflict`` when
    they refuse it).
    """
    state = Room.objects.filter(pk=room_id).values_list("conversation_state", flat=True).first() or {}
    active = state.get("active_agent_id")
    if state.get("human") or not active:
        conversation_handback(room_id, target)
        return None
    result = conversation_handoff(room_id=room_id, from_agent_id=active, target=target, reason=f"operator {operator}")
    if not result.accepted:
        raise Conflict(result.reason, code="handoff_refused")
    return active


def conversation_set_language(room_id: str, language: str) -> ConversationState:
    """Set the room's language; every agent's prompt asks for replies in it."""
    with transaction.atomic():
        room = _locked_room(room_id)
        state = ConversationState.from_dict(room.conversation_state)
        state.context["language"] = language.strip()[:64]
        _save_state(room_id, state)
    return state


def conversation_set_phase(room_id: str, phase: str, *, reason: str = "") -> ConversationState:
    """Move the room to ``phase`` (its stage's agent becomes active when the room has a pipeline)."""
    with transaction.atomic():
        room = _locked_room(room_id)
        state = ConversationState.from_dict(room.conversation_state)
        pipeline = pipeline_for(state.pipeline_id, room_agent_ids(room_id))
        stage = pipeline.stage_for_phase(phase) if pipeline else None
        if pipeline is not None and stage is None:
            raise InvalidInput(f"pipeline '{pipeline.id}' has no phase '{phase}'", code="unknown_phase")
        old = state.phase
        if old == phase:
            return state
        state.phase = phase
        state.phase_history.append(
            {
                "from_phase": old,
                "to_phase": phase,
                "reason": reason,
                "at": _now_iso(),
                "agent_id": stage.agent_id if stage else None,
            }
        )
        if stage is not None and not state.human:
            state.active_agent_id = stage.agent_id
        _save_state(room_id, state)
        _record(room_id, EventType.PHASE_TRANSITION, f"Phase {old} → {phase}", from_phase=old, to_phase=phase, reason=reason)
        _fire_on_commit(
            HookTrigger.ON_PHASE_TRANSITION, {"room_id": room_id, "from_phase": old, "to_phase": phase, "reason": reason}
        )
    return state


# --- generations -----------------------------------------------------------------------


def generation_plan(*, room_id: str, agent_id: str, event_id: str, kind: str = GenerationKind.REPLY) -> tuple[str, bool]:
    """Write the row of a reply owed by ``agent_id`` to ``event_id``, in the caller's transaction.

    Returns ``(generation_id, steering)``. While the same agent is still running
    a tool loop in this room, the new message steers that loop instead (it reads
    the message between rounds): the row is written as ``steering``. Pass the
    result to ``generation_dispatch`` once the transaction has committed.
    """
    # Runs in the inbound transaction of every routed message: the running
    # check and the INSERT are one statement (agents.statements).
    gen_id = uuid.uuid4().hex
    running = statements.plan_generation(
        generation_id=gen_id,
        room_id=room_id,
        agent_id=agent_id,
        event_id=event_id,
        kind=kind,
        now=timezone.now(),
        may_steer=kind == GenerationKind.REPLY,
    )
    return gen_id, running is not None


def _announce_thinking(room_id: str, agent_id: str) -> None:
    """Tell the room's sockets that ``agent_id`` is on its reply, from now until its first token."""
    if not room_id or not agent_id:
        return
    agent = agent_get(agent_id)
    realtime.publish_agent_thinking(room_id, agent_id, display_name=agent.display_name if agent else agent_id)


def generation_dispatch(
    generation_id: str, *, steering: bool, steer_target_id: str | None = None, room_id: str = "", agent_id: str = ""
) -> None:
    """Enqueue a committed generation's task; a steering row whose loop already ended gets its own reply.

    With ``room_id`` and ``agent_id``, the room's sockets hear ``agent_thinking`` as the reply is
    queued (a message that steers a running loop adds nothing: that loop is already answering).
    """
    from agents.tasks import generate_reply_task

    if not steering:
        _announce_thinking(room_id, agent_id)
        enqueue(generate_reply_task, generation_id)
        return
    # The loop may have finished between the check and now: whoever moves the
    # row out of STEERING first (this, or the loop's own release) decides.
    target = steer_target_id or Generation.objects.filter(pk=generation_id).values_list("steer_target_id", flat=True).first()
    if not Generation.objects.filter(pk=target, status=GenerationStatus.RUNNING).exists() and generation_release_steering(
        generation_id
    ):
        _announce_thinking(room_id, agent_id)
        enqueue(generate_reply_task, generation_id)


def generation_request(*, room_id: str, agent_id: str, event_id: str, kind: str = GenerationKind.REPLY) -> str | None:
    """Owe a reply by ``agent_id`` to ``event_id``: the row, then its task (once per event and agent).

    Returns the generation id, or None if it was already requested.
    """
    try:
        with transaction.atomic():
            gen_id, steering = generation_plan(room_id=room_id, agent_id=agent_id, event_id=event_id, kind=kind)
    except IntegrityError:
        return None
    generation_dispatch(gen_id, steering=steering, room_id=room_id, agent_id=agent_id)
    return gen_id


def generation_release_steering(generation_id: str) -> bool:
    """A steering message its loop did not read becomes an ordinary pending reply; True if this call moved it."""
    return bool(
        Generation.objects.filter(pk=generation_id, status=GenerationStatus.STEERING).update(
            status=GenerationStatus.PENDING, steer_target=None
        )
    )


# A generation whose worker was lost this many times is failed, not retried again.
GENERATION_MAX_ATTEMPTS = 3


def generations_sweep(
    *, stale_after_seconds: float = 300.0, pending_after_seconds: float = 30.0, now: datetime | None = None
) -> list[str]:
    """Recover generations whose task was lost; the ids of those to run again.

    A generation running for longer than any tool loop may (its worker died)
    goes back to pending, or fails after ``GENERATION_MAX_ATTEMPTS``. A
    generation pending for longer than a queue takes to start it lost its
    task; each such id is returned for the caller to enqueue (running it twice
    is harmless: the task claims the row first).
    """
    now = now or timezone.now()
    stale = Generation.objects.filter(
        status=GenerationStatus.RUNNING, started_at__lt=now - timedelta(seconds=stale_after_seconds)
    )
    for gen_id, attempts in stale.values_list("id", "attempts"):
        status = GenerationStatus.PENDING if attempts < GENERATION_MAX_ATTEMPTS else GenerationStatus.FAILED
        # Only if still running: the worker may have finished meanwhile.
        Generation.objects.filter(pk=gen_id, status=GenerationStatus.RUNNING).update(status=status, error="worker lost")
    pending = Generation.objects.filter(
        status=GenerationStatus.PENDING, created_at__lt=now - timedelta(seconds=pending_after_seconds)
    )
    return list(pending.values_list("id", flat=True))
