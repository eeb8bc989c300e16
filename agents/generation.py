"""The generation engine: one agent's reply to one message, streamed, with its tool loop.

``generation_execute(generation_id)`` claims the row, builds the context
(memory window, system prompt with the room's overrides and language, the
handoff the agent inherited), then runs rounds: the provider streams text
deltas to the room (``stream_start``/``stream_chunk``) and may ask for tools;
the tools of a round run in parallel (``tool_call_start``/``tool_call_end``
ephemeral events) and their results go back to the model, up to the agent's
max rounds and loop timeout. Between rounds a message the user sent meanwhile
steers the loop (or cancels it: "stop"). Provider errors are retried with
exponential backoff and jitter, then the fallback provider takes over; an
error after part of a round was streamed too: that stream ends as abandoned
(``stream_end`` with no event and ``"abandoned": true``) and the retry streams
afresh under a new stream id. The final reply enters the room through
``process_inbound`` with ``chain_depth`` one deeper than the message it
answers, and ``stream_end`` names its event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
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
from agents.selectors import PipelineInfo, agent_for_run, pipeline_for, room_agent_ids_at_version
from agents.statements import ClaimedGeneration, claim_generation
from agents.tools import Tool, ToolContext, get_tool, run_tool_calls, tool_label
from rooms.content.storable import scrub_text
from rooms.enums import Direction, EventStatus, RoomStatus
from rooms.inbound import InboundMessage, process_inbound
from rooms.infra.backoff import retry_delay
from rooms.models import Observation, RoomEvent
from rooms.realtime import broadcast as realtime

logger = logging.getLogger(__name__)

HANDOFF_TOOL = "handoff_conversation"
SKILL_TOOL = "activate_skill"
CANCEL_WORDS = frozenset({"stop", "cancel", "never mind", "nevermind", "forget it", "abort"})
# No retry of a provider call waits longer than this: not the backoff with its jitter, not a Retry-After.
MAX_BACKOFF_SECONDS = 10.0


class GenerationFailed(Exception):
    pass


# --- streaming to the room ---------------------------------------------------------------


def _publish_stream_abandoned(room_id: str, stream_id: str, reason: str) -> None:
    """End a stream whose text will not be the reply: ``stream_end`` with no event, flagged ``abandoned``.

    A client drops what it showed of that stream (channels_app/static/webchat/chat.js
    removes a stream that ends without an ``event_id``).
    """
    realtime.publish_stream_end(room_id, stream_id, None, abandoned=True, reason=reason)


class RoomStream:
    """The reply's stream on the room's sockets: opened on the first delta, rounds separated by a blank line.

    The text of a round is the reply's only once that round's provider call
    succeeds (``commit_round``). A call that fails after some deltas leaves a
    half answer on the sockets: ``abandon_round`` ends that stream as abandoned
    and the next delta opens a fresh one (a new stream id) that starts with the
    text of the rounds already committed, so no client ever shows a half answer
    followed by the whole one.
    """

    def __init__(self, room_id: str, stream_id: str, agent_id: str) -> None:
        self.room_id = room_id
        self.base_id = stream_id
        self.stream_id = stream_id
        self.agent_id = agent_id
        self.started = False
        self.restarts = 0
        self.kept: list[str] = []  # committed rounds
        self.round: list[str] = []  # the round being streamed

    @property
    def round_chars(self) -> int:
        return sum(len(p) for p in self.round)

    def begin_round(self) -> None:
        self.round = []

    def commit_round(self) -> None:
        self.kept.extend(self.round)
        self.round = []

    def abandon_round(self, reason: str) -> None:
        """Drop this round's text; if the sockets saw any of it, end that stream and use a new one."""
        shown = bool(self.round)
        self.round = []
        if shown and self.started:
            _publish_stream_abandoned(self.room_id, self.stream_id, reason)
            self.started = False
            self.restarts += 1
            self.stream_id = f"{self.base_id}-{self.restarts}"

    def delta(self, text: str) -> None:
        if not text:
            return
        if not self.started:
            self.started = True
            realtime.publish_stream_start(self.room_id, self.stream_id, self.agent_id)
            if self.kept:
                # A fresh stream after an abandoned one: what the reply says so far comes first.
                realtime.publish_stream_chunk(self.room_id, self.stream_id, "".join(self.kept))
        if not self.round and self.kept:
            # A new round after tool calls: keep the rounds apart in the text.
            self._send("\n\n")
        self._send(text)

    def _send(self, text: str) -> None:
        self.round.append(text)
        realtime.publish_stream_chunk(self.room_id, self.stream_id, text)

    @property
    def text(self) -> str:
        return "".join(self.kept) + "".join(self.round)

    def end(self, event_id: str | None) -> None:
        if self.started:
            self.started = False
            realtime.publish_stream_end(self.room_id, self.stream_id, event_id)

    def abandon(self, reason: str) -> None:
        """The reply failed: end what the sockets show (if anything) as abandoned."""
        if self.started:
            self.started = False
            _publish_stream_abandoned(self.room_id, self.stream_id, reason)


# --- providers: retry with backoff, then the fallback ----------------------------------------


@dataclass
class ProviderChain:
    providers: list[AIProvider]
    max_retries: int
    base_delay: float
    errors: list[str] = field(default_factory=list)
    used: str = ""

    def stream(self, request: AIRequest, stream: RoomStream, sleep: Callable[[float], None] = time.sleep) -> AIResponse:
        """One round's answer: each provider in turn, each retried with backoff while its errors are retryable.

        An error after some of the answer was streamed is handled the same way
        (a dropped connection, a vendor's error event mid-stream): the partial
        round is abandoned on the sockets and the next attempt streams afresh.
        """
        for provider in self.providers:
            if not provider.supports_vision:
                request = _without_images(request)
            for attempt in range(self.max_retries + 1):
                stream.begin_round()
                try:
                    response = provider.stream(request, stream.delta)
                except ProviderError as exc:
                    midway = stream.round_chars > 0
                    self.errors.append(f"{provider.name} attempt {attempt + 1}{' (mid-stream)' if midway else ''}: {exc}")
                    logger.warning(
                        "AI provider %s failed (attempt %d%s): %s",
                        provider.name,
                        attempt + 1,
                        ", mid-stream" if midway else "",
                        exc,
                    )
                    stream.abandon_round("provider_error")
                    if not exc.retryable:
                        break
                    if attempt < self.max_retries:
                        # The same rule as deliveries: jittered backoff or the vendor's Retry-After, never above the cap.
                        delay = retry_delay(
                            attempt + 1, base=self.base_delay, maximum=MAX_BACKOFF_SECONDS, retry_after=exc.retry_after
                        )
                        sleep(delay)
                    continue
                stream.commit_round()
                self.used = provider.name
                return response
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
    # (provider, model, base url, name of the channel secret holding its key)
    specs = [(agent.provider, agent.model, agent.base_url, "api_key")]
    if agent.fallback_provider:
        specs.append((agent.fallback_provider, agent.fallback_model, agent.fallback_base_url, "fallback_api_key"))
    providers = [
        build_provider(
            name,
            model=model,
            base_url=base_url,
            api_key=channel.get_secret(secret),
            timeout=agent.timeout_seconds,
            agent_name=agent.display_name,
            config=agent.provider_config,
        )
        for name, model, base_url, secret in specs
    ]
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
                label="Connecting you with the right person…",
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
                label="One moment…",
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


def _finish(generation_id: str, status: str, **fields: Any) -> None:
    Generation.objects.filter(pk=generation_id).update(status=status, finished_at=timezone.now(), **fields)


def generation_execute(generation_id: str) -> str:
    """Run a pending generation to its end; returns the status it ended in (or "not_pending")."""
    # The claim and everything the run needs before its first token, in one
    # round trip (agents.statements.claim_generation).
    job = claim_generation(generation_id, timezone.now())
    if job is None:
        return "not_pending"
    try:
        status = _execute(job)
    except GenerationFailed as exc:
        _finish(job.id, GenerationStatus.FAILED, error=str(exc)[:4000])
        Observation.objects.create(
            room_id=job.room_id,
            event_id=job.trigger_event_id,
            kind="ai_generation_failed",
            summary=f"Agent {job.agent_id} could not answer: {exc}"[:2000],
            data={"generation_id": job.id, "agent_id": job.agent_id},
        )
        status = GenerationStatus.FAILED
    except Exception as exc:
        logger.exception("generation %s crashed", job.id)
        _finish(job.id, GenerationStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:4000])
        status = GenerationStatus.FAILED
    finally:
        # Whatever happened (a reply, a skip, a failure), this agent no longer owes it: the page stops "thinking…".
        realtime.publish_agent_thinking(job.room_id, job.agent_id, thinking=False)
        _release_unread_steering(job.id)
    return status


def _release_unread_steering(generation_id: str) -> None:
    from agents.services import generation_release_steering
    from agents.tasks import generate_reply_task
    from rooms.infra.task_queue import enqueue

    for steer_id in Generation.objects.filter(steer_target_id=generation_id, status=GenerationStatus.STEERING).values_list(
        "id", flat=True
    ):
        if generation_release_steering(steer_id):
            enqueue(generate_reply_task, steer_id)


def _take_steering(generation_id: str) -> list[RoomEvent]:
    taken = []
    for steer in Generation.objects.filter(steer_target_id=generation_id, status=GenerationStatus.STEERING).select_related(
        "trigger_event"
    ):
        if Generation.objects.filter(pk=steer.pk, status=GenerationStatus.STEERING).update(status=GenerationStatus.ABSORBED):
            if steer.trigger_event is not None:
                taken.append(steer.trigger_event)
    return sorted(taken, key=lambda e: e.seq)


def _skip(generation_id: str, why: str) -> str:
    _finish(generation_id, GenerationStatus.SKIPPED, error=why)
    return GenerationStatus.SKIPPED


def _round_label(calls: list[dict[str, str]]) -> str:
    """One line for the customer while a round's tools run: their labels, each once."""
    return " ".join(dict.fromkeys(c["label"] for c in calls))


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


def _execute(job: ClaimedGeneration) -> str:
    agent = agent_for_run(job.agent_id, job.agent_updated_at)
    if agent is None:
        return _skip(job.id, "agent disabled or removed")
    if job.trigger_event_id is None or job.trigger_seq is None:
        return _skip(job.id, "the message is gone")
    if job.trigger_status != EventStatus.DELIVERED:
        # A hook after the router blocked it: the row committed with the event, but no reply is owed.
        return _skip(job.id, f"the message was {job.trigger_status}")
    if job.room_status not in (RoomStatus.ACTIVE, RoomStatus.PAUSED):
        return _skip(job.id, f"room is {job.room_status}")
    state = ConversationState.from_dict(job.conversation_state)
    if state.human:
        return _skip(job.id, "a human operator has the room")
    if state.active_agent_id and state.active_agent_id != agent.id:
        return _skip(job.id, f"{state.active_agent_id} is the active agent now")
    room_id = job.room_id
    overrides = job.ai_config or {}
    bound = room_agent_ids_at_version(room_id, job.routing_version)
    pipeline: PipelineInfo | None = pipeline_for(state.pipeline_id, bound)
    targets = handoff_targets(state=state, pipeline=pipeline, from_agent=agent.id, bound_agents=bound)
    ctx = ToolContext(room_id=room_id, agent_id=agent.id, generation_id=job.id, trigger_event_id=job.trigger_event_id)
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
    messages = sliding_window(agent, room_id, upto_seq=job.trigger_seq, window=window, vision=vision)
    if job.kind == GenerationKind.GREETING:
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
    stream = RoomStream(room_id, job.id, agent.id)
    try:
        return _run(job, agent, chain, toolbox, ctx, request, stream)
    except BaseException:
        # Whatever the sockets show of this reply will not be stored: say so.
        stream.abandon("failed")
        raise


def _run(
    job: ClaimedGeneration,
    agent: Agent,
    chain: ProviderChain,
    toolbox: Toolbox,
    ctx: ToolContext,
    request: AIRequest,
    stream: RoomStream,
) -> str:
    """The tool loop, then the reply through the inbound path and the generation's bookkeeping."""
    room_id = job.room_id
    usage = Usage()
    tool_log: list[dict[str, Any]] = []
    deadline = time.monotonic() + agent.tool_loop_timeout_seconds
    stopped = ""
    rounds = 0
    cancelled = False
    absorbed = False  # messages that steered this loop: they share its reply
    for rounds in range(1, agent.max_tool_rounds + 1):  # noqa: B007 - rounds is reported after the loop
        response = chain.stream(request, stream)
        usage.add(response.usage)
        if not response.tool_calls:
            break
        request.messages.append(ChatMessage("assistant", response.text, tool_calls=response.tool_calls))
        calls = [{"id": c.id, "name": c.name, "label": tool_label(toolbox.resolve(c.name))} for c in response.tool_calls]
        realtime.publish_tool_call_start(room_id, agent.id, calls, label=_round_label(calls))
        started = time.perf_counter()
        outcomes = run_tool_calls(
            response.tool_calls,
            toolbox.resolve,
            ctx,
            max_chars=agent.tool_result_max_chars,
            timeout=max(0.1, deadline - time.monotonic()),
        )
        realtime.publish_tool_call_end(room_id, agent.id, round((time.perf_counter() - started) * 1000, 1))
        for o in outcomes:
            request.messages.append(ChatMessage("tool", o.result, tool_call_id=o.call.id, tool_name=o.call.name))
            tool_log.append(_tool_log(o.call, o.result, o.ok, o.duration_ms, rounds))
        if toolbox.handoff_result is not None:
            break  # the conversation has a new owner: this agent's turn is over
        request.tools = toolbox.specs()  # an activated skill may have added tools
        steering = _take_steering(job.id)
        absorbed = absorbed or bool(steering)
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
        _finish(
            job.id,
            GenerationStatus.CANCELLED,
            rounds=rounds,
            usage=usage.as_dict(),
            tool_calls=tool_log,
            provider_used=chain.used,
        )
        stream.end(None)
        return GenerationStatus.CANCELLED
    if stopped:
        stream.begin_round()
        stream.delta(
            "(I had to stop before finishing: that took too long.)"
            if stopped == "timeout"
            else "(I had to stop before finishing: too many tool steps.)"
        )
        stream.commit_round()
    # A provider's text is not ours to refuse: the rare unpaired surrogate a
    # stream can decode to is replaced rather than costing the whole reply.
    text = scrub_text(stream.text.strip())
    event_id = None
    # The reply and the row saying it was given commit together: one commit
    # instead of two, and no moment where the reply is stored while the row
    # still says running (a message arriving then would wait to steer a loop
    # that is over). Both before ``stream_end``, so the next message a client
    # sends on seeing it does not race this generation's bookkeeping.
    with transaction.atomic():
        if text:
            result = process_inbound(
                InboundMessage(
                    channel_id=agent.id,
                    room_id=room_id,
                    content={"type": "text", "body": text},
                    direction=Direction.OUTBOUND,
                    chain_depth=job.trigger_chain_depth + 1,
                    parent_event_id=job.trigger_event_id,
                    idempotency_key=f"generation:{job.id}",
                    metadata={"agent_id": agent.id, "generation_id": job.id, "usage": usage.as_dict(), "provider": chain.used},
                )
            )
            event_id = result.event_id
        _finish(
            job.id,
            GenerationStatus.DONE,
            reply_event_id=event_id,
            rounds=rounds,
            usage=usage.as_dict(),
            tool_calls=tool_log,
            provider_used=chain.used,
            error=f"stopped: {stopped}" if stopped else "",
        )
        if absorbed:
            Generation.objects.filter(steer_target_id=job.id, status=GenerationStatus.ABSORBED).update(reply_event_id=event_id)
    stream.end(event_id)
    if toolbox.handoff_result is not None:
        from agents.services import handoff_greeting

        handoff_greeting(room_id=room_id, result=toolbox.handoff_result)
    return GenerationStatus.DONE
