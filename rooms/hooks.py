"""Hooks: Python callables that run at named points of a room's life.

Register with the decorator, in any installed app's ``hooks.py`` (imported by
``RoomsConfig.ready``)::

    from rooms.content.kinds import content_text
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
logged, fires ``ON_ERROR`` and is skipped: the pipeline always continues.

Containment. A hook that runs inside a transaction (the inbound path's) gets a
savepoint opened on its first query, so whatever it does to the database —
a failed query included, which on PostgreSQL would abort the whole
transaction — is undone on its own when it fails, and the message goes on.

Once per message. The inbound path may retry a message's transaction (a
group-commit batch rolled back, a race with a concurrent copy). A retry reuses
each hook's recorded decision instead of calling the hook again, so its side
effects outside the database (a CRM call, a counter) happen once. A hook whose
only side effects are writes in that transaction (the AI router's generation
row) declares ``transactional=True`` and is called again, since the rollback
undid its writes.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction

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
    # Its only side effects are writes in the caller's transaction: a retried
    # transaction calls it again instead of reusing its first decision.
    transactional: bool = False

    @functools.cached_property
    def off_thread(self) -> bool:
        """Runs on the hook pool (a deadline or a coroutine): outside the caller's transaction.

        Cached: asked per hook per message, and ``iscoroutinefunction`` costs ~2 µs.
        """
        return self.timeout is not None or asyncio.iscoroutinefunction(self.fn)

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

    def any_off_thread(self, trigger: HookTrigger, ctx: HookContext) -> bool:
        """Whether a hook of ``trigger`` matching ``ctx`` runs on the pool, outside the caller's transaction."""
        return any(h.off_thread and h.matches(ctx) for h in self._hooks[trigger])


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
    transactional: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function for ``trigger`` (lower priority runs first).

    ``timeout`` runs it on the hook pool with that deadline (off the caller's
    thread and transaction). ``transactional``: its only side effects are
    database writes in the caller's transaction, so a retried transaction
    calls it again (see the module docstring).
    """

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
                transactional=transactional,
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


@dataclass(frozen=True)
class HookOutcome:
    """What one call of a hook came to: its decision, or why it has none."""

    result: HookResult | None = None
    error: str = ""


@dataclass
class HookFailure:
    hook: str
    trigger: str
    error: str


@dataclass
class HookRecord:
    """One message's hook outcomes, kept across retries of its transaction.

    ``outcomes`` is keyed by (trigger, hook name); ``failures`` lists the hooks
    that failed in the latest attempt, for the caller to record.
    """

    outcomes: dict[tuple[str, str], HookOutcome] = field(default_factory=dict)
    failures: list[HookFailure] = field(default_factory=list)


class _Savepoint:
    """An execute wrapper that opens a savepoint just before a hook's first query.

    Hooks that never touch the database (most) cost nothing; one that does
    gets its work contained. ``before_first_query`` runs first, outside the
    savepoint (the inbound path uses it to write the rows a hook must see).
    """

    __slots__ = ("conn", "before_first_query", "sid", "busy")

    def __init__(self, conn: Any, before_first_query: Callable[[], None] | None) -> None:
        self.conn = conn
        self.before_first_query = before_first_query
        self.sid: str | None = None
        self.busy = False

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict) -> Any:
        if self.sid is None and not self.busy:
            self.busy = True
            try:
                if self.before_first_query is not None:
                    self.before_first_query()
                self.sid = self.conn.savepoint()
            finally:
                self.busy = False
        return execute(sql, params, many, context)


def contained(fn: Callable[..., Any], *args: Any, before_first_query: Callable[[], None] | None = None, **kwargs: Any) -> Any:
    """Call user code so that its failure undoes its database work and leaves the caller's transaction usable.

    Outside a transaction it is a plain call. Inside one, a savepoint is
    opened on the code's first query (none if it never queries) and rolled
    back if it raises; the exception still propagates to the caller.

    Every inbound message calls this for each inline hook, so it costs ~2 µs
    when the hook does not query: one connection lookup (``connection`` is a
    thread-local proxy, each attribute a lookup) and the wrapper pushed on
    the connection's list directly rather than through ``execute_wrapper()``.
    """
    conn = connections[DEFAULT_DB_ALIAS]
    if not conn.in_atomic_block:
        return fn(*args, **kwargs)
    marked_before = conn.needs_rollback
    guard = _Savepoint(conn, before_first_query)
    wrappers = conn.execute_wrappers
    wrappers.append(guard)
    try:
        result = fn(*args, **kwargs)
    except BaseException:
        wrappers.pop()
        _undo(conn, guard, marked_before)
        raise
    wrappers.pop()
    if guard.sid is not None:
        if conn.needs_rollback and not marked_before:
            # A query failed inside Django's own error handling (``save()``)
            # and the code caught the error: the transaction is marked broken.
            _undo(conn, guard, marked_before)
            raise DatabaseError("a query failed and the error was caught; the work is undone")
        try:
            conn.savepoint_commit(guard.sid)
        except DatabaseError:
            # The code swallowed a failed query: on PostgreSQL the transaction
            # is aborted until this savepoint is rolled back.
            _undo(conn, guard, marked_before)
            raise
    return result


def _undo(conn: Any, guard: _Savepoint, marked_before: bool) -> None:
    """Roll back to the guard's savepoint; the transaction is usable again."""
    if guard.sid is not None:
        # Rolled back to a point before the failure, the transaction no longer
        # needs a rollback of its own (``atomic()`` does the same at a
        # savepoint); the flag would refuse the ROLLBACK TO itself.
        conn.needs_rollback = False
        conn.savepoint_rollback(guard.sid)
        conn.needs_rollback = marked_before


def call_hook(h: Hook, *args: Any, before_first_query: Callable[[], None] | None = None) -> HookOutcome:
    """Run one hook and say what came of it; never raises (a failure is logged and returned).

    Inline hooks called inside a transaction are contained in a savepoint
    (see ``_Savepoint``). ``before_first_query`` runs before the hook's first
    query, outside that savepoint.
    """
    timeout = h.timeout if h.timeout is not None else settings.ROOMKIT_HOOK_TIMEOUT_SECONDS
    started = time.perf_counter()
    try:
        if h.off_thread:
            result = _pool.submit(_call, h.fn, args).result(timeout=timeout)
        else:
            # Plain sync hooks run inline: a thread hop per message costs more
            # than most hooks do. Their overrun is logged after the fact.
            result = contained(h.fn, *args, before_first_query=before_first_query)
            elapsed = time.perf_counter() - started
            if elapsed > timeout:
                logger.warning("hook %s took %.2fs (timeout %.2fs); result ignored", h.name, elapsed, timeout)
                return HookOutcome(error=f"timed out: took {elapsed:.2f}s, limit {timeout:.2f}s")
    except FutureTimeout:
        logger.warning("hook %s timed out after %.2fs; skipped", h.name, timeout)
        return HookOutcome(error=f"timed out after {timeout:.2f}s")
    except Exception as exc:
        logger.exception("hook %s raised; skipped", h.name)
        return HookOutcome(error=f"{type(exc).__name__}: {exc}"[:1000])
    return HookOutcome(result if isinstance(result, HookResult) else None)


def run_hook(h: Hook, *args: Any) -> HookResult | None:
    """Run one hook; None if it raised or timed out (logged, reported to ``ON_ERROR``, never propagated)."""
    outcome = call_hook(h, *args)
    if outcome.error:
        ctx = args[-1] if args else None
        failure = HookFailure(h.name, h.trigger.value, outcome.error)
        _report_failure(failure, getattr(ctx, "room_id", None), getattr(ctx, "channel_id", None))
    return outcome.result


def report_failure(
    name: str, trigger: HookTrigger, exc: BaseException, *, room_id: str | None = None, channel_id: str | None = None
) -> None:
    """Report user code that failed (a hook, an identity resolver) to ``ON_ERROR``."""
    _report_failure(HookFailure(name, trigger.value, f"{type(exc).__name__}: {exc}"[:1000]), room_id, channel_id)


def _report_failure(failure: HookFailure, room_id: str | None, channel_id: str | None) -> None:
    """Fire ``ON_ERROR`` for a failure (after the caller's transaction commits, if it is in one).

    The payload is a dict: ``source`` ("hook"), ``hook``, ``trigger``,
    ``error``, ``room_id``, ``channel_id``. A failing ``ON_ERROR`` hook is only
    logged, never reported to itself.
    """
    if failure.trigger == HookTrigger.ON_ERROR or not registry.has(HookTrigger.ON_ERROR):
        return
    payload = {
        "source": "hook",
        "hook": failure.hook,
        "trigger": failure.trigger,
        "error": failure.error,
        "room_id": room_id,
        "channel_id": channel_id,
    }

    def fire_on_error() -> None:
        from rooms.infra.task_queue import enqueue
        from rooms.tasks import fire_hooks_task

        enqueue(fire_hooks_task, HookTrigger.ON_ERROR.value, "error", payload)

    transaction.on_commit(fire_on_error)


def iter_sync_hooks(
    trigger: HookTrigger,
    payload: Any,
    ctx: HookContext,
    *,
    record: HookRecord | None = None,
    before_first_query: Callable[[], None] | None = None,
) -> Iterator[tuple[Hook, HookResult]]:
    """Run matching hooks in priority order, one per decision asked for.

    Lazy on purpose: a caller that applies each decision before asking for the
    next gives later hooks the payload as modified so far, and a caller that
    stops (a block, a decisive identity answer) runs no further hook.

    With ``record`` (one per message, kept across retries of its transaction)
    a hook already called for this message is not called again: its recorded
    outcome is used, unless it is ``transactional``. Failures of this attempt
    are appended to ``record.failures`` and reported to ``ON_ERROR``.
    """
    for h in registry.for_trigger(trigger, ctx):
        key = (trigger.value, h.name)
        outcome = record.outcomes.get(key) if record is not None and not h.transactional else None
        if outcome is None:
            outcome = call_hook(h, payload, ctx, before_first_query=before_first_query)
            if record is not None:
                record.outcomes[key] = outcome
        if outcome.error:
            failure = HookFailure(h.name, trigger.value, outcome.error)
            if record is not None:
                record.failures.append(failure)
            _report_failure(failure, ctx.room_id, ctx.channel_id)
        if outcome.result is not None:
            yield h, outcome.result


def run_sync_hooks(trigger: HookTrigger, payload: Any, ctx: HookContext) -> list[tuple[Hook, HookResult]]:
    """Run every matching hook in priority order on the same payload; return the decisions made."""
    return list(iter_sync_hooks(trigger, payload, ctx))


def fire(trigger: HookTrigger, payload: Any, ctx: HookContext) -> None:
    """Run the hooks of a notification trigger; their results are not used."""
    for h in registry.for_trigger(trigger, ctx):
        run_hook(h, payload, ctx)
