"""Reads for the agents app, cached where the hot path asks often.

Agents and pipelines change rarely and every routed message needs them: each
process keeps them for a couple of seconds; a save in this process drops them.
A generation's agent is cached longer (``agent_for_run``), because each run
checks it against the agent row's ``updated_at`` for free, in its claim.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from agents.models import Agent, Generation, GenerationStatus, MCPServer, Pipeline, PipelineStage
from rooms.enums import ChannelCategory, ChannelType
from rooms.errors import NotFound
from rooms.inbound import route_cache
from rooms.models import Channel, ChannelBinding, Room

CACHE_TTL = 2.0
# Generations validate their cached agent against its row (``agent_for_run``);
# this bounds how long changes to related rows made elsewhere go unseen.
RUN_CACHE_MAX_AGE = 30.0
_lock = threading.Lock()
_agents: dict[str, tuple[float, Agent | None]] = {}
_run_agents: dict[str, tuple[object, float, Agent | None]] = {}
_pipelines: tuple[float, list[PipelineInfo]] | None = None


@dataclass(frozen=True)
class StageInfo:
    phase: str
    agent_id: str
    next_phase: str
    intents: tuple[str, ...] = ()
    channel_types: tuple[str, ...] = ()
    can_handoff_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class PipelineInfo:
    id: str
    allow_human_handoff: bool
    greet_on_handoff: bool
    stages: tuple[StageInfo, ...] = field(default_factory=tuple)

    def stage_for_phase(self, phase: str | None) -> StageInfo | None:
        return next((s for s in self.stages if s.phase == phase), None) if phase else None

    def stage_for_agent(self, agent_id: str | None) -> StageInfo | None:
        return next((s for s in self.stages if s.agent_id == agent_id), None) if agent_id else None

    def agent_ids(self) -> set[str]:
        return {s.agent_id for s in self.stages}


def agent_get(agent_id: str) -> Agent | None:
    """An enabled agent (cached a couple of seconds), or None."""
    now = time.monotonic()
    hit = _agents.get(agent_id)
    if hit and hit[0] > now:
        return hit[1]
    agent = _load_agent(agent_id)
    with _lock:
        _agents[agent_id] = (now + CACHE_TTL, agent)
    return agent


def _load_agent(agent_id: str) -> Agent | None:
    # With its channel (the API keys live there) and MCP servers: a generation
    # reads both, and a lazy load would be a query on its way to the first token.
    return Agent.objects.filter(pk=agent_id, enabled=True).select_related("channel").prefetch_related("mcp_servers").first()


def agent_for_run(agent_id: str, version: object) -> Agent | None:
    """The enabled agent a generation runs, from this process's cache while ``version`` (the agent row's
    ``updated_at``, read in the same round trip as the generation's claim) is the cached one.

    Any save of the agent, in any process, changes ``updated_at``, so an edited
    or disabled agent is re-read by its next generation. What lives in other
    rows (its MCP servers, keys saved on its channel without saving the agent)
    is re-read after ``RUN_CACHE_MAX_AGE`` at most, and at once when saved in
    this process (the signals below).
    """
    now = time.monotonic()
    hit = _run_agents.get(agent_id)
    if hit is not None and hit[0] == version and hit[1] > now:
        return hit[2]
    agent = _load_agent(agent_id)
    with _lock:
        _run_agents[agent_id] = (version, now + RUN_CACHE_MAX_AGE, agent)
    return agent


def agent_require(agent_id: str) -> Agent:
    agent = agent_get(agent_id)
    if agent is None:
        raise NotFound(f"unknown agent '{agent_id}'", code="unknown_agent")
    return agent


def pipelines() -> list[PipelineInfo]:
    """Every enabled pipeline with its ordered stages (cached a couple of seconds)."""
    global _pipelines
    now = time.monotonic()
    cached = _pipelines
    if cached and cached[0] > now:
        return cached[1]
    infos: dict[str, PipelineInfo] = {}
    stages: dict[str, list[StageInfo]] = {}
    for p in Pipeline.objects.filter(enabled=True).order_by("id"):
        infos[p.id] = PipelineInfo(p.id, p.allow_human_handoff, p.greet_on_handoff)
        stages[p.id] = []
    for s in PipelineStage.objects.filter(pipeline_id__in=list(infos)).order_by("pipeline_id", "order", "id"):
        stages[s.pipeline_id].append(
            StageInfo(
                s.phase,
                s.agent_id,
                s.next_phase,
                tuple(str(i).lower() for i in s.intents or []),
                tuple(s.channel_types or []),
                tuple(s.can_handoff_to or []),
            )
        )
    result = [PipelineInfo(p.id, p.allow_human_handoff, p.greet_on_handoff, tuple(stages[p.id])) for p in infos.values()]
    with _lock:
        _pipelines = (now + CACHE_TTL, result)
    return result


def pipeline_for(pipeline_id: str | None, agent_ids: list[str]) -> PipelineInfo | None:
    """The room's pipeline: the one its state names, else the first whose stages use a bound agent."""
    all_pipelines = pipelines()
    if pipeline_id:
        named = next((p for p in all_pipelines if p.id == pipeline_id), None)
        if named is not None:
            return named
    bound = set(agent_ids)
    return next((p for p in all_pipelines if p.agent_ids() & bound), None)


def room_agent_ids(room_id: str) -> list[str]:
    """Agents bound to the room (not muted), in binding order."""
    return list(
        ChannelBinding.objects.filter(room_id=room_id, category=ChannelCategory.INTELLIGENCE, muted=False)
        .order_by("id")
        .values_list("channel_id", flat=True)
    )


def room_agent_ids_at(room: Room) -> list[str]:
    """``room_agent_ids`` from this process's cache of the room's bindings, valid for the row's routing version."""
    return room_agent_ids_at_version(room.id, room.routing_version)


def room_agent_ids_at_version(room_id: str, routing_version: int) -> list[str]:
    return [
        b.channel_id
        for b in route_cache.room_bindings(room_id, routing_version)
        if b.category == ChannelCategory.INTELLIGENCE and not b.muted
    ]


def running_generation_id(room_id: str, agent_id: str) -> str | None:
    return (
        Generation.objects.filter(room_id=room_id, agent_id=agent_id, status=GenerationStatus.RUNNING)
        .order_by("-created_at")
        .values_list("id", flat=True)
        .first()
    )


def clear_caches() -> None:
    global _pipelines
    with _lock:
        _agents.clear()
        _run_agents.clear()
        _pipelines = None


@receiver(post_save, sender=Agent)
@receiver(post_delete, sender=Agent)
@receiver(post_save, sender=Pipeline)
@receiver(post_delete, sender=Pipeline)
@receiver(post_save, sender=PipelineStage)
@receiver(post_delete, sender=PipelineStage)
def _forget(sender: type, **kwargs: object) -> None:
    clear_caches()


@receiver(m2m_changed, sender=Agent.mcp_servers.through)
@receiver(post_save, sender=MCPServer)
@receiver(post_delete, sender=MCPServer)
def _forget_m2m(sender: type, **kwargs: object) -> None:
    clear_caches()


@receiver(post_save, sender=Channel)
def _forget_channel(sender: type, instance: Channel, **kwargs: object) -> None:
    # An agent's keys are on its channel (same id): only AI channels matter.
    if instance.channel_type == ChannelType.AI:
        clear_caches()
