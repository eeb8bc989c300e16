"""The generation engine: one agent's reply to one message, streamed, with its tool loop.

``generation_execute(generation_id)`` claims the row, builds the context
(memory window, system prompt with the room's overrides and language, the
handoff the agent inherited), then runs rounds: the provider streams text
deltas to the room (``stream_start``/``stream_chunk``) and may ask for tools;
the tools of a round run in parallel (``tool_call_start``/``tool_call_end``
ephemeral events) and their results go back to the model, up to the agent's
max rounds and loop timeout. Between rounds a message the user sent meanwhile
steers the loop (or cancels it: "stop"). Provider errors are retried with
exponential backoff and jitter, then the fallback provider takes over. The
final reply enters the room through ``process_inbound`` with ``chain_depth``
one deeper than the message it answers, and ``stream_end`` names its event.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import F
from django.utils import timezone

from agents import skills as skills_module
from agents.mcp_tools import mcp_server_tools
from agents.memory import event_text, sliding_window
from agents.models import Agent, Generation, GenerationKind, GenerationStatus, MCPServer
from agents.orchestration import ConversationState, handoff_parameters, handoff_targets
from agents.prompts import build_system_prompt
from agents.providers import build_provider
from agents.providers.base import (
    GREETING_PREFIX,
    AIProvider,
    AIRequest,
    AIResponse,
    ChatMessage,
    ProviderError,
    ToolCall,
    ToolSpec,
    Usage,
)
from agents.selectors import PipelineInfo, agent_get, pipeline_for, room_agent_ids_at
from agents.tools import Tool, ToolContext, get_tool, run_tool_calls
from rooms import realtime
from rooms.enums import Direction, EventStatus, RoomStatus
from rooms.inbound import InboundMessage, process_inbound
from rooms.models import Observation, RoomEvent

logger = logging.getLogger(__name__)

HANDOFF_TOOL = "handoff_conversation"
SKILL_TOOL = "activate_skill"
CANCEL_WORDS = frozenset({"stop", "cancel", "never mind", "nevermind", "forget it", "abort"})
MAX_BACKOFF_SECONDS = 10.0


class GenerationFailed(Exception):
    pass


# --- streaming to the room ---------------------------------------------------------------


class RoomStream:
    """The reply's stream on the room's sockets: opened on the first delta, rounds separated by a blank line."""

    def __init__(self, room_id: str, stream_id: str, agent_id: str) -> None:
        self.room_id = room_id
        self.stream_id = stream_id
        self.agent_id = agent_id
        self.started = False
        self.parts: list[str] = []
        self.round_chars = 0

    def new_round(self) -> None:
        self.round_chars = 0

    def delta(self, text: str) -> None:
        if not text:
            return
        if not self.started:
            self.started = True
            realtime.publish_stream_start(self.room_id, self.stream_id, self.agent_id)
        if self.round_chars == 0 and self.parts:
            # A new round after tool calls: keep the rounds apart in the text.
            self._send("\n\n")
        self.round_chars += len(text)
        self._send(text)

    def _send(self, text: str) -> None:
        self.parts.append(text)
        realtime.publish_stream_chunk(self.room_id, self.stream_id, text)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def end(self, event_id: str | None) -> None:
        if self.started:
            realtime.publish_stream_end(self.room_id, self.stream_id, event_id)


# --- providers: retry with backoff, then the fallback ----------------------------------------


@dataclass
class ProviderChain:
    providers: list[AIProvider]
    max_retries: int
    base_delay: float
    errors: list[str] = field(default_factory=list)
    used: str = ""

    def stream(self, request: AIRequest, stream: RoomStream, sleep: Callable[[float], None] = time.sleep) -> AIResponse:
        for provider in self.providers:
            if not provider.supports_vision:
                request = _without_images(request)
            for attempt in range(self.max_retries + 1):
                stream.new_round()
                try:
                    response = provider.stream(request, stream.delta)
                    self.used = provider.name
                    return response
                except ProviderError as exc:
                    self.errors.append(f"{provider.name} attempt {attempt + 1}: {exc}")
                    logger.warning("AI provider %s failed (attempt %d): %s", provider.name, attempt + 1, exc)
                    if stream.round_chars:
                        # Text already reached the sockets: another attempt would repeat it.
                        raise GenerationFailed(f"{provider.name} failed mid-stream: {exc}") from exc
                    if not exc.retryable:
                        break
                    if attempt < self.max_retries:
                        delay = min(MAX_BACKOFF_SECONDS, self.base_delay * (2**attempt)) * random.uniform(0.5, 1.5)
                        sleep(delay)
        raise GenerationFailed("; ".join(self.errors[-4:]) or "no provider configured")


def _without_images(request: AIRequest) -> AIRequest:
    if not any(m.images for m in request.messages):
        return request
    messages = [
        ChatMessage(
            m.role, (m.content + " [image]").strip() if m.images else m.content, [], m.tool_calls, m.tool_call_id, m.tool_name
        )
        for m in request.messages
    ]
    return AIRequest(request.system, messages, request.model, request.tools, request.temperature, request.max_tokens)


def provider_chain(agent: Agent) -> ProviderChain:
    channel = agent.channel
    providers = [
        build_provider(
            agent.provider,
            model=agent.model,
            base_url=agent.base_url,
            api_key=channel.get_secret("api_key"),
            timeout=agent.timeout_seconds,
            agent_name=agent.display_name,
            config=agent.provider_config,
        )
    ]
    if agent.fallback_provider:
        providers.append(
            build_provider(
                agent.fallback_provider,
                model=agent.fallback_model,
                base_url=agent.fallback_base_url,
                api_key=channel.get_secret("fallback_api_key"),
                timeout=agent.timeout_seconds,
                agent_name=agent.display_name,
                config=agent.provider_config,
            )
        )
    return ProviderChain(providers, agent.max_retries, agent.retry_base_delay_seconds)


# --- the tools one reply may call -----------------------------------------------------------


class Toolbox:
    """The tools of one reply: the agent's (or the room's override), handoff, skills."""

    def __init__(
        self,
        *,
        agent: Agent,
        names: list[str],
        handoff_to: list[str],
        phases: list[str],
        skill_names: list[str],
        mcp_servers: list[MCPServer] | None = None,
    ) -> None:
        mcp_servers = mcp_servers or []
        self.tools: dict[str, Tool] = {}
        self.handoff_result: Any = None
        for name in names:
            t = get_tool(name)
            if t is not None:
                self.tools[name] = t
            else:
                logger.warning("agent %s lists unknown tool %s", agent.id, name)
        if handoff_to:
            self.tools[HANDOFF_TOOL] = Tool(
                HANDOFF_TOOL,
                "Hand the conversation over to another agent or to a human operator.",
                handoff_parameters(handoff_to, phases),
                self._handoff,
                concurrent=False,
            )
        for server in mcp_servers:
            for t in mcp_server_tools(server):
                self.tools.setdefault(t.name, t)  # the agent's own tools win a name clash
        self.skill_names = [n for n in skill_names if skills_module.registry.get(n) is not None]
        if self.skill_names:
            self.tools[SKILL_TOOL] = Tool(
                SKILL_TOOL,
                "Activate one of your skills: returns its instructions and enables its tools.",
                {"type": "object", "properties": {"name": {"type": "string", "enum": self.skill_names}}, "required": ["name"]},
                self._activate_skill,
            )

    def specs(self) -> list[ToolSpec]:
        return [t.spec for t in self.tools.values()]

    def resolve(self, name: str) -> Tool | None:
        return self.tools.get(name)

    def _handoff(self, ctx: ToolContext, target: str, reason: str, summary: str = "", next_phase: str | None = None) -> dict:
        from agents.services import conversation_handoff

        result = conversation_handoff(
            room_id=ctx.room_id,
            from_agent_id=ctx.agent_id,
            target=target,
            reason=reason,
            summary=summary,
            next_phase=next_phase,
            greet=False,
        )
        if result.accepted:
            self.handoff_result = result
        return result.as_tool_result()

    def _activate_skill(self, ctx: ToolContext, name: str) -> str:
        skill = skills_module.registry.get(name)
        if skill is None:
            return f"Error: no skill '{name}'."
        for tool_name in skill.tools:
            t = get_tool(tool_name)
            if t is not None:
                self.tools.setdefault(tool_name, t)
        return skill.instructions


# --- the engine ----------------------------------------------------------------------------


def _claim(generation_id: str) -> bool:
    return bool(
        Generation.objects.filter(pk=generation_id, status=GenerationStatus.PENDING).update(
            status=GenerationStatus.RUNNING, attempts=F("attempts") + 1, started_at=timezone.now()
        )
    )


def _finish(gen: Generation, status: str, **fields: Any) -> None:
    Generation.objects.filter(pk=gen.pk).update(status=status, finished_at=timezone.now(), **fields)


def generation_execute(generation_id: str) -> str:
    """Run a pending generation to its end; returns the status it ended in (or "not_pending")."""
    if not _claim(generation_id):
        return "not_pending"
    gen = Generation.objects.select_related("room", "trigger_event").get(pk=generation_id)
    try:
        status = _execute(gen)
    except GenerationFailed as exc:
        _finish(gen, GenerationStatus.FAILED, error=str(exc)[:4000])
        Observation.objects.create(
            room_id=gen.room_id,
            event_id=gen.trigger_event_id,
            kind="ai_generation_failed",
            summary=f"Agent {gen.agent_id} could not answer: {exc}"[:2000],
            data={"generation_id": gen.id, "agent_id": gen.agent_id},
        )
        status = GenerationStatus.FAILED
    except Exception as exc:
        logger.exception("generation %s crashed", gen.id)
        _finish(gen, GenerationStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:4000])
        status = GenerationStatus.FAILED
    finally:
        _release_unread_steering(gen.id)
    return status


def _release_unread_steering(generation_id: str) -> None:
    from agents.services import generation_release_steering
    from agents.tasks import generate_reply_task
    from rooms.task_queue import enqueue

    for steer_id in Generation.objects.filter(steer_target_id=generation_id, status=GenerationStatus.STEERING).values_list(
        "id", flat=True
    ):
        if generation_release_steering(steer_id):
            enqueue(generate_reply_task, steer_id)


def _take_steering(gen: Generation) -> list[RoomEvent]:
    taken = []
    for steer in Generation.objects.filter(steer_target_id=gen.id, status=GenerationStatus.STEERING).select_related(
        "trigger_event"
    ):
        if Generation.objects.filter(pk=steer.pk, status=GenerationStatus.STEERING).update(status=GenerationStatus.ABSORBED):
            if steer.trigger_event is not None:
                taken.append(steer.trigger_event)
    return sorted(taken, key=lambda e: e.seq)


def _skip(gen: Generation, why: str) -> str:
    _finish(gen, GenerationStatus.SKIPPED, error=why)
    return GenerationStatus.SKIPPED


def _tool_log(call: ToolCall, result: str, ok: bool, ms: float, round_no: int) -> dict[str, Any]:
    return {
        "round": round_no,
        "id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "ok": ok,
        "ms": round(ms, 1),
        "result": result[:500],
    }


def _execute(gen: Generation) -> str:
    agent = agent_get(gen.agent_id)
    trigger = gen.trigger_event
    room = gen.room
    if agent is None:
        return _skip(gen, "agent disabled or removed")
    if trigger is None:
        return _skip(gen, "the message is gone")
    if trigger.status != EventStatus.DELIVERED:
        # A hook after the router blocked it: the row committed with the event, but no reply is owed.
        return _skip(gen, f"the message was {trigger.status}")
    if room.status not in (RoomStatus.ACTIVE, RoomStatus.PAUSED):
        return _skip(gen, f"room is {room.status}")
    state = ConversationState.from_dict(room.conversation_state)
    if state.human:
        return _skip(gen, "a human operator has the room")
    if state.active_agent_id and state.active_agent_id != agent.id:
        return _skip(gen, f"{state.active_agent_id} is the active agent now")
    overrides = room.ai_config or {}
    bound = room_agent_ids_at(room)
    pipeline: PipelineInfo | None = pipeline_for(state.pipeline_id, bound)
    targets = handoff_targets(state=state, pipeline=pipeline, from_agent=agent.id, bound_agents=bound)
    ctx = ToolContext(room_id=room.id, agent_id=agent.id, generation_id=gen.id, trigger_event_id=trigger.id)
    tool_names = overrides.get("tools") if isinstance(overrides.get("tools"), list) else agent.tools
    toolbox = Toolbox(
        agent=agent,
        names=[str(n) for n in tool_names or []],
        handoff_to=targets,
        phases=[s.phase for s in pipeline.stages] if pipeline else [],
        skill_names=list(agent.skills or []),
        mcp_servers=[m for m in agent.mcp_servers.all() if m.enabled],
    )
    chain = provider_chain(agent)
    vision = agent.vision and chain.providers[0].supports_vision
    window = int(overrides.get("memory_window") or agent.memory_window)
    messages = sliding_window(agent, room.id, upto_seq=trigger.seq, window=window, vision=vision)
    if gen.kind == GenerationKind.GREETING:
        instruction = agent.greeting or "Greet the user, say who you are and how you can help."
        messages.append(ChatMessage("user", f"{GREETING_PREFIX} You now have this conversation. {instruction}"))
    system = build_system_prompt(
        agent, state=state, overrides=overrides, handoff_targets=targets, skill_names=toolbox.skill_names
    )
    request = AIRequest(
        system=system,
        messages=messages,
        model=agent.model,
        tools=toolbox.specs(),
        temperature=float(overrides.get("temperature", agent.temperature)),
        max_tokens=int(overrides.get("max_tokens", agent.max_tokens)),
    )
    stream = RoomStream(room.id, gen.id, agent.id)
    usage = Usage()
    tool_log: list[dict[str, Any]] = []
    deadline = time.monotonic() + agent.tool_loop_timeout_seconds
    stopped = ""
    rounds = 0
    cancelled = False
    for rounds in range(1, agent.max_tool_rounds + 1):  # noqa: B007 - rounds is reported after the loop
        response = chain.stream(request, stream)
        usage.add(response.usage)
        if not response.tool_calls:
            break
        request.messages.append(ChatMessage("assistant", response.text, tool_calls=response.tool_calls))
        realtime.publish_tool_call_start(
            room.id, agent.id, [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in response.tool_calls]
        )
        started = time.perf_counter()
        outcomes = run_tool_calls(
            response.tool_calls,
            toolbox.resolve,
            ctx,
            max_chars=agent.tool_result_max_chars,
            timeout=max(0.1, deadline - time.monotonic()),
        )
        realtime.publish_tool_call_end(room.id, agent.id, round((time.perf_counter() - started) * 1000, 1))
        for o in outcomes:
            request.messages.append(ChatMessage("tool", o.result, tool_call_id=o.call.id, tool_name=o.call.name))
            tool_log.append(_tool_log(o.call, o.result, o.ok, o.duration_ms, rounds))
        if toolbox.handoff_result is not None:
            break  # the conversation has a new owner: this agent's turn is over
        request.tools = toolbox.specs()  # an activated skill may have added tools
        steering = _take_steering(gen)
        if any(event_text(ev).strip().lower().rstrip(".!") in CANCEL_WORDS for ev in steering):
            cancelled = True
            break
        for ev in steering:
            request.messages.append(ChatMessage("user", f"[The user added while you were working]: {event_text(ev)}"))
        if time.monotonic() > deadline:
            stopped = "timeout"
            break
    else:
        stopped = "max_rounds"
    if cancelled:
        stream.end(None)
        _finish(
            gen, GenerationStatus.CANCELLED, rounds=rounds, usage=usage.as_dict(), tool_calls=tool_log, provider_used=chain.used
        )
        return GenerationStatus.CANCELLED
    if stopped:
        stream.new_round()
        stream.delta(
            "(I had to stop before finishing: that took too long.)"
            if stopped == "timeout"
            else "(I had to stop before finishing: too many tool steps.)"
        )
    text = stream.text.strip()
    event_id = None
    if text:
        result = process_inbound(
            InboundMessage(
                channel_id=agent.id,
                room_id=room.id,
                content={"type": "text", "body": text},
                direction=Direction.OUTBOUND,
                chain_depth=trigger.chain_depth + 1,
                parent_event_id=trigger.id,
                idempotency_key=f"generation:{gen.id}",
                metadata={"agent_id": agent.id, "generation_id": gen.id, "usage": usage.as_dict(), "provider": chain.used},
            )
        )
        event_id = result.event_id
    stream.end(event_id)
    _finish(
        gen,
        GenerationStatus.DONE,
        reply_event_id=event_id,
        rounds=rounds,
        usage=usage.as_dict(),
        tool_calls=tool_log,
        provider_used=chain.used,
        error=f"stopped: {stopped}" if stopped else "",
    )
    Generation.objects.filter(steer_target_id=gen.id, status=GenerationStatus.ABSORBED).update(reply_event_id=event_id)
    if toolbox.handoff_result is not None:
        from agents.services import handoff_greeting

        handoff_greeting(room_id=room.id, result=toolbox.handoff_result)
    return GenerationStatus.DONE
