"""Hooks: Python callables that run at named points of a room's life.

Register with the decorator, in any installed app's ``hooks.py`` (imported by
``RoomsConfig.ready``)::

    from rooms.content import content_text
    from rooms.hooks import HookResult, HookTrigger, hook

    @hook(HookTrigger.BEFORE_BROADCAST, channel_types={"sms"}, priority=10)
    def no_shouting(event, ctx):
        text = content_text(event.content)
        if text.isupper():
            return HookResult.modify(content={"type": "text", "body": text.lower()})
        return HookResult.allow()

``BEFORE_BROADCAST`` hooks run synchronously inside the inbound transaction, in
priority order, and may allow, block or modify: each sees the event as modified
by the ones before it, and a block stops the chain. Every other trigger is
fired after the fact; its results are ignored except for the identity triggers,
whose first decisive result wins. A hook that raises or overruns its timeout is
logged and skipped: the pipeline always continues.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)


class HookTrigger(enum.StrEnum):
    # Event pipeline
    BEFORE_BROADCAST = "before_broadcast"
    AFTER_BROADCAST = "after_broadcast"
    # Room lifecycle
    ON_ROOM_CREATED = "on_room_created"
    ON_ROOM_PAUSED = "on_room_paused"
    ON_ROOM_CLOSED = "on_room_closed"
    # Channel lifecycle
    ON_CHANNEL_ATTACHED = "on_channel_attached"
    ON_CHANNEL_DETACHED = "on_channel_detached"
    ON_CHANNEL_MUTED = "on_channel_muted"
    ON_CHANNEL_UNMUTED = "on_channel_unmuted"
    # Identity
    ON_IDENTITY_AMBIGUOUS = "on_identity_ambiguous"
    ON_IDENTITY_UNKNOWN = "on_identity_unknown"
    ON_PARTICIPANT_IDENTIFIED = "on_participant_identified"
    # Voice (audio)
    ON_SPEECH_START = "on_speech_start"
    ON_SPEECH_END = "on_speech_end"
    ON_TRANSCRIPTION = "on_transcription"
    ON_PARTIAL_TRANSCRIPTION = "on_partial_transcription"
    ON_VAD_SILENCE = "on_vad_silence"
    ON_VAD_AUDIO_LEVEL = "on_vad_audio_level"
    ON_INPUT_AUDIO_LEVEL = "on_input_audio_level"
    ON_OUTPUT_AUDIO_LEVEL = "on_output_audio_level"
    # Voice (TTS)
    BEFORE_TTS = "before_tts"
    AFTER_TTS = "after_tts"
    ON_TTS_CANCELLED = "on_tts_cancelled"
    ON_BARGE_IN = "on_barge_in"
    # Voice (pipeline)
    ON_SPEAKER_CHANGE = "on_speaker_change"
    ON_DTMF = "on_dtmf"
    ON_TURN_COMPLETE = "on_turn_complete"
    ON_TURN_INCOMPLETE = "on_turn_incomplete"
    ON_BACKCHANNEL = "on_backchannel"
    ON_RECORDING_STARTED = "on_recording_started"
    ON_RECORDING_STOPPED = "on_recording_stopped"
    # Realtime voice
    ON_REALTIME_TOOL_CALL = "on_realtime_tool_call"
    ON_REALTIME_TEXT_INJECTED = "on_realtime_text_injected"
    # Orchestration
    ON_PHASE_TRANSITION = "on_phase_transition"
    ON_HANDOFF = "on_handoff"
    ON_HANDOFF_REJECTED = "on_handoff_rejected"
    # Side effects
    ON_TASK_CREATED = "on_task_created"
    ON_DELIVERY_STATUS = "on_delivery_status"
    ON_ERROR = "on_error"
    ON_OBSERVATION = "on_observation"
    ON_PROTOCOL_TRACE = "on_protocol_trace"


class HookAction(enum.StrEnum):
    ALLOW = "allow"
    BLOCK = "block"
    MODIFY = "modify"


@dataclass(frozen=True)
class HookResult:
    """What a hook decided. Identity hooks also use ``identity_id``/``challenge``/``reject``."""

    action: HookAction = HookAction.ALLOW
    reason: str = ""
    content: dict | None = None
    metadata: dict | None = None
    # Identity decisions (ON_IDENTITY_AMBIGUOUS / ON_IDENTITY_UNKNOWN).
    identity_id: str | None = None
    display_name: str | None = None
    challenge: str | None = None
    # Side records to create with the event: [{"title", "description"}], [{"kind", "summary", "data"}].
    tasks: tuple[dict, ...] = ()
    observations: tuple[dict, ...] = ()

    @classmethod
    def allow(cls, **extra: Any) -> HookResult:
        return cls(HookAction.ALLOW, **extra)

    @classmethod
    def block(cls, reason: str, **extra: Any) -> HookResult:
        return cls(HookAction.BLOCK, reason=reason, **extra)

    @classmethod
    def modify(cls, *, content: dict | None = None, metadata: dict | None = None, **extra: Any) -> HookResult:
        return cls(HookAction.MODIFY, content=content, metadata=metadata, **extra)

    @classmethod
    def identify(cls, identity_id: str, display_name: str | None = None) -> HookResult:
        return cls(HookAction.ALLOW, identity_id=identity_id, display_name=display_name)

    @classmethod
    def challenge_sender(cls, prompt: str) -> HookResult:
        return cls(HookAction.BLOCK, reason="identity_challenge", challenge=prompt)

    @classmethod
    def reject(cls, reason: str = "identity_rejected") -> HookResult:
        return cls(HookAction.BLOCK, reason=reason)


class HookContext:
    """What a hook sees besides its payload: the room and the event's origin.

    ``room`` is loaded on first access when the caller did not pass it: most
    hooks never look at it, and the inbound path should not pay a query per
    message for them. A hook running inline reads it in the inbound
    transaction (it sees the room as locked there).
    """

    def __init__(
        self,
        room_id: str | None,
        channel_id: str | None = None,
        channel_type: str | None = None,
        direction: str | None = None,
        room: Any = None,
        bindings: list[Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.room_id = room_id
        self.channel_id = channel_id
        self.channel_type = channel_type
        self.direction = direction
        self._room = room
        self.bindings = bindings if bindings is not None else []
        self.extra = extra if extra is not None else {}

    @property
    def room(self) -> Any:
        if self._room is None and self.room_id:
            from rooms.models import Room

            self._room = Room.objects.filter(pk=self.room_id).first()
        return self._room

    def __repr__(self) -> str:
        return f"<HookContext room={self.room_id} channel={self.channel_id} direction={self.direction}>"


@dataclass(frozen=True)
class Hook:
    trigger: HookTrigger
    fn: Callable[..., Any]
    name: str
    priority: int = 0
    channel_types: frozenset[str] | None = None
    channel_ids: frozenset[str] | None = None
    directions: frozenset[str] | None = None
    timeout: float | None = None

    def matches(self, ctx: HookContext) -> bool:
        # Filters are ANDed; a filter that is not set matches everything.
        if self.channel_types is not None and ctx.channel_type not in self.channel_types:
            return False
        if self.channel_ids is not None and ctx.channel_id not in self.channel_ids:
            return False
        if self.directions is not None and ctx.direction not in self.directions:
            return False
        return True


class HookRegistry:
    def __init__(self) -> None:
        self._hooks: dict[HookTrigger, list[Hook]] = {t: [] for t in HookTrigger}
        self._lock = threading.Lock()

    def register(self, hook_: Hook) -> Hook:
        with self._lock:
            hooks = [h for h in self._hooks[hook_.trigger] if h.name != hook_.name]
            hooks.append(hook_)
            hooks.sort(key=lambda h: h.priority)
            self._hooks[hook_.trigger] = hooks
        return hook_

    def unregister(self, trigger: HookTrigger, name: str) -> None:
        with self._lock:
            self._hooks[trigger] = [h for h in self._hooks[trigger] if h.name != name]

    def for_trigger(self, trigger: HookTrigger, ctx: HookContext) -> list[Hook]:
        return [h for h in self._hooks[trigger] if h.matches(ctx)]

    def names(self, trigger: HookTrigger) -> list[str]:
        """Registered hooks of ``trigger``, in the order they run."""
        return [h.name for h in self._hooks[trigger]]

    def has(self, trigger: HookTrigger) -> bool:
        return bool(self._hooks[trigger])


registry = HookRegistry()


def _as_set(values: Iterable[Any] | None) -> frozenset[str] | None:
    if values is None:
        return None
    return frozenset(v.value if isinstance(v, enum.Enum) else str(v) for v in values)


def hook(
    trigger: HookTrigger,
    *,
    name: str | None = None,
    priority: int = 0,
    channel_types: Iterable[Any] | None = None,
    channel_ids: Iterable[str] | None = None,
    directions: Iterable[Any] | None = None,
    timeout: float | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function for ``trigger`` (lower priority runs first)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        registry.register(
            Hook(
                trigger=HookTrigger(trigger),
                fn=fn,
                name=name or f"{fn.__module__}.{fn.__qualname__}",
                priority=priority,
                channel_types=_as_set(channel_types),
                channel_ids=_as_set(channel_ids),
                directions=_as_set(directions),
                timeout=timeout,
            )
        )
        return fn

    return decorate


# Hooks with a deadline run on this pool so a slow one can be abandoned. They
# get the event object, not the open transaction.
_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="roomkit-hook")


def _call(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    if asyncio.iscoroutinefunction(fn):
        return asyncio.run(fn(*args))
    return fn(*args)


def run_hook(h: Hook, *args: Any) -> HookResult | None:
    """Run one hook; None if it raised or timed out (logged, never propagated)."""
    timeout = h.timeout if h.timeout is not None else settings.ROOMKIT_HOOK_TIMEOUT_SECONDS
    started = time.perf_counter()
    try:
        if asyncio.iscoroutinefunction(h.fn) or h.timeout is not None:
            result = _pool.submit(_call, h.fn, args).result(timeout=timeout)
        else:
            # Plain sync hooks run inline: a thread hop per message costs more
            # than most hooks do. Their overrun is logged after the fact.
            result = h.fn(*args)
            elapsed = time.perf_counter() - started
            if elapsed > timeout:
                logger.warning("hook %s took %.2fs (timeout %.2fs); result ignored", h.name, elapsed, timeout)
                return None
    except FutureTimeout:
        logger.warning("hook %s timed out after %.2fs; skipped", h.name, timeout)
        return None
    except Exception:
        logger.exception("hook %s raised; skipped", h.name)
        return None
    return result if isinstance(result, HookResult) else None


def iter_sync_hooks(trigger: HookTrigger, payload: Any, ctx: HookContext) -> Iterator[tuple[Hook, HookResult]]:
    """Run matching hooks in priority order, one per decision asked for.

    Lazy on purpose: a caller that applies each decision before asking for the
    next gives later hooks the payload as modified so far, and a caller that
    stops (a block, a decisive identity answer) runs no further hook.
    """
    for h in registry.for_trigger(trigger, ctx):
        result = run_hook(h, payload, ctx)
        if result is not None:
            yield h, result


def run_sync_hooks(trigger: HookTrigger, payload: Any, ctx: HookContext) -> list[tuple[Hook, HookResult]]:
    """Run every matching hook in priority order on the same payload; return the decisions made."""
    return list(iter_sync_hooks(trigger, payload, ctx))


def fire(trigger: HookTrigger, payload: Any, ctx: HookContext) -> None:
    """Run the hooks of a notification trigger; their results are not used."""
    for h in registry.for_trigger(trigger, ctx):
        run_hook(h, payload, ctx)
