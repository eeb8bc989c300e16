"""Orchestration rules: conversation state, who answers a message, who may hand off to whom.

Pure functions over plain data; the writes live in ``agents.services`` (under
the room's row lock) and the router hook in ``agents.hooks``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from agents.selectors import PipelineInfo

HUMAN = "human"


@dataclass
class ConversationState:
    """What ``Room.conversation_state`` holds (the seeds' ``ConversationState``)."""

    phase: str | None = None
    active_agent_id: str | None = None
    previous_agent_id: str | None = None
    handoff_count: int = 0
    phase_history: list[dict[str, Any]] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)
    pipeline_id: str | None = None
    # None while agents answer; {"status": "waiting"|"active", "operator", "since"} while a human has the room.
    human: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ConversationState:
        data = data or {}
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def language(self) -> str:
        return str(self.context.get("language") or "")


@dataclass(frozen=True)
class RouteDecision:
    agent_id: str | None
    reason: str
    phase: str | None = None


def route(
    *,
    state: ConversationState,
    bound_agents: list[str],
    pipeline: PipelineInfo | None,
    channel_type: str | None,
    text: str,
    intent: str | None,
) -> RouteDecision:
    """Which bound agent answers: none while a human has the room; else the sticky active agent,
    else the first stage rule that matches (intent, channel type), else the stage of the current
    phase, else the default (the pipeline's first usable stage, or the first bound agent)."""
    if state.human:
        return RouteDecision(None, "human")
    if not bound_agents:
        return RouteDecision(None, "no_agent")
    if state.active_agent_id in bound_agents:
        return RouteDecision(state.active_agent_id, "sticky", state.phase)
    lowered = text.lower()
    if pipeline is not None:
        usable = [s for s in pipeline.stages if s.agent_id in bound_agents]
        for s in usable:
            if not (s.intents or s.channel_types):
                continue
            if s.channel_types and channel_type not in s.channel_types:
                continue
            if s.intents and not ((intent or "").lower() in s.intents or any(i in lowered for i in s.intents)):
                continue
            return RouteDecision(s.agent_id, "rule", s.phase)
        current = pipeline.stage_for_phase(state.phase)
        if current is not None and current.agent_id in bound_agents:
            return RouteDecision(current.agent_id, "phase", current.phase)
        for s in usable:
            if not s.channel_types or channel_type in s.channel_types:
                return RouteDecision(s.agent_id, "default", s.phase)
    return RouteDecision(bound_agents[0], "default", state.phase)


def handoff_targets(
    *, state: ConversationState, pipeline: PipelineInfo | None, from_agent: str, bound_agents: list[str]
) -> list[str]:
    """Where ``from_agent`` may hand the conversation: the next stage, the stage's listed targets,
    the agent that handed it over (handing back), and a human when the pipeline allows one.
    Without a pipeline: any other bound agent, or a human — and no handoff at all for a lone agent
    (as in the seeds, the handoff tool comes with orchestration: a pipeline or several agents)."""
    if pipeline is None:
        others = [a for a in bound_agents if a != from_agent]
        return others + [HUMAN] if others else []
    targets: list[str] = []
    stage = pipeline.stage_for_agent(from_agent)
    if stage is not None:
        nxt = pipeline.stage_for_phase(stage.next_phase)
        if nxt is not None:
            targets.append(nxt.agent_id)
        targets += [t for t in stage.can_handoff_to if t != HUMAN or pipeline.allow_human_handoff]
    if state.previous_agent_id and state.previous_agent_id != from_agent:
        targets.append(state.previous_agent_id)
    if pipeline.allow_human_handoff:
        targets.append(HUMAN)
    seen: list[str] = []
    for t in targets:
        if t != from_agent and t not in seen and (t == HUMAN or t in bound_agents or t in pipeline.agent_ids()):
            seen.append(t)
    return seen


def handoff_parameters(targets: list[str], phases: list[str]) -> dict[str, Any]:
    """The JSON schema of ``handoff_conversation`` for one agent: its allowed targets as an enum."""
    props: dict[str, Any] = {
        "target": {"type": "string", "enum": targets, "description": "Agent id to hand over to, or 'human' for an operator."},
        "reason": {"type": "string", "description": "Why the conversation is handed over."},
        "summary": {"type": "string", "description": "What the next agent needs to know so far."},
    }
    if phases:
        props["next_phase"] = {"type": "string", "enum": phases, "description": "The conversation phase to move to."}
    return {"type": "object", "properties": props, "required": ["target", "reason"]}
