"""The one inbound path: everything that enters a room goes through here.

``process_inbound`` is the only writer of ``RoomEvent`` rows. Webhook views,
sockets, AI replies, operator replies, the REST API and ``simulate_inbound``
all call it. Every message takes the same eight steps (ARCHITECTURE.md, "The
one path") in one transaction, read top to bottom in ``_take_steps``:

1. find the channel and the room: ``_place``, by the sender's cached route
   (``_place_on_cached_routes``) or else the slow way (``_place_by_routing``:
   ``routing.route_message``, and ``open_room_for_channel`` for a new sender
   the channel admits); the channel itself is read by ``_prepare``;
2. drop a duplicate: in ``_place``, by ``statements.probe_and_take_seqs`` on
   a cached route, by ``statements.find_duplicate_id`` first thing on the slow
   way; ``_Duplicate`` rolls the attempt back and answers with the first result;
3. resolve the sender's identity and participant: ``_place_by_routing``
   (``senders.participant_for`` and its identity hooks; ``_Rejected`` rolls
   back); a cached route carries the participant it found;
4. lock the room row and take the next seq: ``_place``, the ``UPDATE …
   RETURNING`` of ``statements`` (on a cached route in the same round trip as
   step 2, for one message or a whole batch);
5. check chain depth: ``_compose`` (``_pre_broadcast_block``);
6. run the ``BEFORE_BROADCAST`` hooks: ``_compose`` (``_run_before_broadcast``);
7. store the event and plan its deliveries: ``_compose`` builds both
   (``fanout.plan_fanout``), ``_compose_and_store`` writes them, ``_settle``
   adds what follows the INSERT (Observations) and makes the caller's result;
8. after commit: ``transaction.on_commit`` at the end of ``_take_steps`` runs
   ``after_commit.AfterCommit`` (fan-out, enqueues, ``AFTER_BROADCAST``).

What differs between messages is only who shares the transaction and how a
failed attempt is retried: ``_process_alone`` gives one message its own
transaction (a stale cached route is retried the slow way, a lost race once);
``_run_batch``, the group commit's batch (``group_commit``), puts the messages
on cached routes in one transaction (``_process_together``) and sends the rest,
and everything if that transaction fails, alone.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from rooms import hooks
from rooms.addresses import InvalidPhoneNumber, is_phone_channel, normalize_channel_address
from rooms.content.kinds import check_storable_json, content_text, validate_content
from rooms.content.storable import storable_text
from rooms.enums import (
    ChannelCategory,
    ChannelType,
    DeliveryStatus,
    EventStatus,
    EventType,
    IdentificationStatus,
    Visibility,
)
from rooms.errors import Conflict, Forbidden, InvalidInput, NotFound
from rooms.hooks import HookAction, HookContext, HookTrigger
from rooms.inbound import route_cache, statements
from rooms.inbound.after_commit import AfterCommit
from rooms.inbound.fanout import plan_fanout
from rooms.inbound.fast_insert import new_instance
from rooms.inbound.group_commit import GroupCommit
from rooms.inbound.messages import InboundMessage, InboundResult
from rooms.inbound.route_cache import route_key
from rooms.inbound.routing import open_room_for_channel, route_message
from rooms.inbound.senders import challenge_event, participant_for
from rooms.inbound.transcoding import TRANSCODING_FAILED
from rooms.inbound.visibility import can_send
from rooms.models import (
    Channel,
    ChannelBinding,
    Delivery,
    Observation,
    Participant,
    Room,
    RoomEvent,
    Task,
)
from rooms.realtime import broadcast as realtime
from rooms.selectors import get_channel

__all__ = ["InboundMessage", "InboundResult", "open_room_for_channel", "process_inbound"]

logger = logging.getLogger(__name__)

_MAX_KEY = 255
_EVENT_TYPES = frozenset(EventType.values)
_MAX_CHAIN_DEPTH_VALUE = 32767
_CHANGE_TYPES = frozenset({EventType.EDIT, EventType.DELETE})
_TEXT_FIELDS = (
    "sender",
    "display_name",
    "idempotency_key",
    "provider_message_id",
    "room_id",
    "participant_id",
    "parent_event_id",
    "correlation_id",
)


def process_inbound(message: InboundMessage) -> InboundResult:
    """Store ``message`` as the room's next event and plan its fan-out.

    A repeat of a message already seen (same channel and idempotency key or
    provider message id) returns the first result and changes nothing.
    Raises ``RoomKitError`` subclasses (4xx) for input the caller got wrong.
    """
    prepared = _prepare(message)
    if connection.in_atomic_block or not settings.ROOMKIT_GROUP_COMMIT:
        # Inside the caller's own transaction the event must be part of it
        # (and visible to it), so it cannot ride in another thread's batch.
        return _process_alone(prepared)
    return _group.submit(prepared)


# --- Before any transaction: the caller's input, checked in the caller's thread.


@dataclass(slots=True)
class _Prepared:
    message: InboundMessage
    channel: Channel | None
    content: dict[str, Any]
    # The message's hook outcomes, kept across retries of its transaction so
    # that each hook runs once per message (rooms.hooks, "Once per message").
    hooks: hooks.HookRecord = field(default_factory=hooks.HookRecord)
    # A phone-number channel's sender that is no number (kept as given).
    address_problem: str = ""


def _prepare(message: InboundMessage) -> _Prepared:
    """Check what the caller sent (raising 4xx errors in its own thread) before any transaction."""
    content = _content_of(message)
    _check_keys(message)
    if message.idempotency_key == "" or message.provider_message_id == "":
        # An empty key is no key: stored as "", it would collide on the unique
        # index with the channel's next message that has an empty key too.
        message = replace(
            message, idempotency_key=message.idempotency_key or None, provider_message_id=message.provider_message_id or None
        )
    channel = get_channel(message.channel_id) if message.channel_id else None
    if channel is not None and not channel.enabled:
        raise Forbidden(f"channel '{channel.id}' is disabled", code="channel_disabled")
    if channel is None and not message.room_id:
        raise InvalidInput("a message needs a channel or a room", code="no_channel")
    address_problem = ""
    if channel is not None and message.sender and is_phone_channel(channel.channel_type):
        # One person, one sender: E.164 however the number was written. A
        # vendor's sender that is no number is kept (the message is not ours
        # to lose) and noted for operators.
        try:
            sender = normalize_channel_address(channel.channel_type, channel.config, message.sender)
        except InvalidPhoneNumber as exc:
            sender, address_problem = message.sender.strip(), exc.message
        if sender != message.sender:
            message = replace(message, sender=sender)
    return _Prepared(message, channel, content, address_problem=address_problem)


def _content_of(message: InboundMessage) -> dict[str, Any]:
    if message.content is not None:
        raw = message.content
    elif message.text is not None:
        raw = {"type": "text", "body": message.text}
    else:
        raise InvalidInput("message has no content", code="invalid_content")
    if message.event_type not in _EVENT_TYPES:
        raise InvalidInput(f"unknown event type '{message.event_type}'", code="invalid_event_type")
    content = validate_content(raw)
    # Edit and delete content belongs to edit and delete events only: anywhere
    # else it would claim a change that never happens.
    if (content["type"] in _CHANGE_TYPES or message.event_type in _CHANGE_TYPES) and content["type"] != message.event_type:
        raise InvalidInput(f"a {message.event_type} event cannot carry {content['type']} content", code="invalid_content")
    return content


def _check_keys(message: InboundMessage) -> None:
    for name in ("idempotency_key", "provider_message_id"):
        value = getattr(message, name)
        if value is not None and (not isinstance(value, str) or len(value) > _MAX_KEY):
            raise InvalidInput(f"{name} must be a string of at most {_MAX_KEY} characters")
    if len(message.sender) > _MAX_KEY:
        raise InvalidInput(f"sender must be at most {_MAX_KEY} characters")
    # One rule for every entrance (sockets, API, webhooks, operators, agents,
    # transcripts): text no database of ours can store is the caller's error.
    for name in _TEXT_FIELDS:
        value = getattr(message, name)
        if value is not None and (not isinstance(value, str) or not storable_text(value)):
            raise InvalidInput(f"{name} must be text without NUL characters or unpaired surrogates", code="invalid_text")
    if message.metadata:
        check_storable_json(message.metadata, "metadata")
    # The column is a PositiveSmallIntegerField: PostgreSQL would refuse a
    # larger value with a DataError (a 500) where SQLite stores it.
    if not isinstance(message.chain_depth, int) or not 0 <= message.chain_depth <= _MAX_CHAIN_DEPTH_VALUE:
        raise InvalidInput(f"chain_depth must be an integer from 0 to {_MAX_CHAIN_DEPTH_VALUE}")


def _route_key(prepared: _Prepared) -> tuple | None:
    """The message's key in the route cache (a message without a channel has no route to cache)."""
    message, channel = prepared.message, prepared.channel
    return route_key(message.room_id, channel.id, message.sender, message.participant_id) if channel is not None else None


def _channel_keys(prepared: _Prepared) -> list[tuple[str, str, str]]:
    """(channel id, key field, value) for each deduplication key the message carries."""
    message, channel, keys = prepared.message, prepared.channel, []
    if channel is None:
        return keys
    if message.idempotency_key:
        keys.append((channel.id, "idempotency_key", message.idempotency_key))
    if message.provider_message_id:
        keys.append((channel.id, "provider_message_id", message.provider_message_id))
    return keys


# --- Transactions: who shares one, and how a failed attempt is tried again.


@dataclass(slots=True)
class _Attempt:
    """One message's try at the steps, in one transaction."""

    prepared: _Prepared
    route_key: tuple | None
    # The cached route to take, or None: the message is routed the slow way.
    route: route_cache.Route | None
    # What the attempt will owe once committed; a retry starts a new one.
    after: AfterCommit = field(default_factory=AfterCommit)


class _Duplicate(Exception):
    """The message was stored before: roll the attempt back (a seq may be taken) and answer with the first."""

    def __init__(self, event_id: str) -> None:
        super().__init__(event_id)
        self.event_id = event_id


class _Rejected(Exception):
    """An identity hook refused the sender: roll the attempt back and answer with ``result``."""

    def __init__(self, result: InboundResult) -> None:
        super().__init__(result.reason)
        self.result = result


class _StaleRoute(Exception):
    """A cached route failed its version check under the room lock (now forgotten)."""


def _process_alone(prepared: _Prepared) -> InboundResult:
    """One message in its own transaction, tried again as far as its failure allows."""
    message = prepared.message
    has_key = bool(message.idempotency_key or message.provider_message_id)
    key = _route_key(prepared)
    use_cache = True
    races = 0
    while True:
        route = route_cache.get_route(key) if key is not None and use_cache else None
        try:
            with transaction.atomic():
                return _take_steps([_Attempt(prepared, key, route)], shared=False)[0]
        except _Duplicate as dup:
            event = RoomEvent.objects.select_related("source_participant").get(pk=dup.event_id)
            return InboundResult("duplicate", event, event.room_id)
        except _Rejected as rejected:
            # Rolled back with the exception: not even a binding routing
            # attached stays.
            return rejected.result
        except _StaleRoute:
            # The cached route no longer matches the room (a binding changed,
            # the room closed): do it again the slow way.
            use_cache = False
        except IntegrityError:
            # Lost a race with a concurrent copy of the same message (unique
            # key per channel), or with another first message opening the
            # same reserved room: the retry finds the winner's rows.
            races += 1
            if races > 1 or not (has_key or message.reserved_room):
                raise


def _outcome(prepared: _Prepared) -> InboundResult | Exception:
    try:
        return _process_alone(prepared)
    except Exception as exc:  # noqa: BLE001 - handed to, and raised in, the caller's thread
        return exc


def _run_batch(batch: Sequence[_Prepared]) -> list[InboundResult | Exception]:
    """Outcomes for messages that arrived together: one transaction for those that can share it.

    Messages from senders already routed (the cached fast path) share the
    batch's transaction; the rest (first messages, edits) go alone after it,
    each exactly as if there were no batch. If anything in the shared
    transaction fails (a racing duplicate, a route gone stale), it is rolled
    back and every message goes alone, so a batch never changes an outcome.
    """
    outcomes: list[InboundResult | Exception | None] = [None] * len(batch)
    shared: list[tuple[int, _Attempt]] = []
    seen_keys: set[tuple[str, str, str]] = set()
    for i, prepared in enumerate(batch):
        key = _shareable_key(prepared, seen_keys)
        route = route_cache.get_route(key) if key is not None else None
        if route is not None:
            seen_keys.update(_channel_keys(prepared))
            shared.append((i, _Attempt(prepared, key, route)))
    if shared:
        try:
            results = _process_together([attempt for _, attempt in shared])
        except Exception:  # noqa: BLE001 - rolled back; each message is retried alone below
            logger.debug("group commit of %d messages rolled back; processing them one by one", len(shared), exc_info=True)
        else:
            for (i, _), result in zip(shared, results, strict=True):
                outcomes[i] = result
    return [outcome if outcome is not None else _outcome(prepared) for outcome, prepared in zip(outcomes, batch, strict=True)]


def _shareable_key(prepared: _Prepared, seen_keys: set[tuple[str, str, str]]) -> tuple | None:
    """The route-cache key of a message that may share the batch's transaction, if it may."""
    message, channel = prepared.message, prepared.channel
    if channel is None or message.event_type in _CHANGE_TYPES:
        return None
    if hooks.registry.any_off_thread(
        HookTrigger.BEFORE_BROADCAST,
        HookContext(room_id=None, channel_id=channel.id, channel_type=channel.channel_type, direction=message.direction),
    ):
        # A hook on the pool reads through its own connection, which cannot
        # see batch-mates before the batch commits; alone, every event before
        # this one is committed when it runs, as the hook expects.
        return None
    # A second copy of a key in the same batch waits for the first to commit,
    # then finds it as the duplicate it is.
    if any(k in seen_keys for k in _channel_keys(prepared)):
        return None
    return _route_key(prepared)


def _process_together(attempts: list[_Attempt]) -> list[InboundResult]:
    """Messages on cached routes, in one transaction: one seq grant per room, one INSERT per table."""
    with transaction.atomic():
        results = _take_steps(attempts, shared=True)
        if connection.vendor == "postgresql":
            # The commit waits on the WAL flush; the next batch can meanwhile
            # be sent, and waits on this room's row lock, not on this thread.
            _group.hand_over()
    return results


_group: GroupCommit[_Prepared, InboundResult] = GroupCommit(_run_batch, max_batch=64)


# --- The eight steps, inside the transaction.


def _take_steps(attempts: Sequence[_Attempt], *, shared: bool) -> list[InboundResult]:
    """The eight steps for one message, or for a batch on cached routes, in the caller's transaction.

    ``shared``: the transaction is a group commit's batch. Raises ``_Duplicate``,
    ``_Rejected`` and ``_StaleRoute`` for the caller to roll back and answer or
    retry, and ``RoomKitError`` for input the caller got wrong.
    """
    now = timezone.now()
    for attempt in attempts:
        # Outcomes are kept across retries; failures are the latest attempt's.
        attempt.prepared.hooks.failures.clear()
    # 1 room and binding, 2 no duplicate, 3 sender, 4 seq under the room lock.
    places = _place(attempts, now)
    # 5 chain depth, 6 BEFORE_BROADCAST hooks, 7 the event and its Delivery rows, stored.
    composed = _compose_and_store(attempts, places, now)
    results = [
        _settle(attempt, placed, event, deliveries, now)
        for attempt, placed, (event, deliveries) in zip(attempts, places, composed, strict=True)
    ]
    # 8 after commit: fan-out, enqueues, AFTER_BROADCAST. A batch's go out
    # together, and one's failure does not cost the others theirs; alone, the
    # work is the message's own (its failure is its caller's).
    afters = [attempt.after for attempt in attempts]
    transaction.on_commit(partial(_run_after_commit, afters) if shared else afters[0].run)
    return results


@dataclass(slots=True)
class _Placed:
    """Where a message lands: its room, seq, the sender's binding and participant."""

    room_id: str
    seq: int
    version: int
    room: Room | None
    source_binding: ChannelBinding | None
    participant_id: str | None
    participant_name: str
    identity_decision: hooks.HookResult | None = None


def _place(attempts: Sequence[_Attempt], now: datetime) -> list[_Placed]:
    """Steps 1-4 for each message: its room and binding, no duplicate, its participant, its seq under the room lock."""
    if attempts[0].route is not None:
        return _place_on_cached_routes(attempts, now)
    # The slow way opens rooms and participants and may ask identity hooks:
    # only ever for a message alone (a batch shares cached routes only).
    (attempt,) = attempts
    return [_place_by_routing(attempt, now)]


def _place_on_cached_routes(attempts: Sequence[_Attempt], now: datetime) -> list[_Placed]:
    """Steps 1-4 for senders routed before, for one message or a batch, in one round trip.

    The duplicate probe travels with the UPDATE that locks each room and takes
    its seqs; a route stands only if the room's ``routing_version``, read in
    that UPDATE, is the one it was cached with.
    """
    per_room = Counter(attempt.route.room_id for attempt in attempts)
    keys = [key for attempt in attempts for key in _channel_keys(attempt.prepared)]
    reopen = frozenset(attempt.route.room_id for attempt in attempts if _from_customer(attempt.prepared))
    duplicate_id, granted = statements.probe_and_take_seqs(keys, per_room, now, reopen)
    if duplicate_id is not None:
        # The seqs were taken in the same round trip: raising rolls them back.
        raise _Duplicate(duplicate_id)
    # Every route is checked before any message's hooks run: a batch spoiled
    # after them would make them run again (alone).
    for attempt in attempts:
        grant = granted[attempt.route.room_id]
        if grant is None or grant[1] != attempt.route.version:
            route_cache.forget_route(attempt.route_key)
            raise _StaleRoute
    # Each room's seqs were taken as one range ending at its new last_seq;
    # its messages get them in arrival order.
    next_seq = {room_id: last_seq - per_room[room_id] + 1 for room_id, (last_seq, _) in granted.items()}
    places = []
    for attempt in attempts:
        route = attempt.route
        seq = next_seq[route.room_id]
        next_seq[route.room_id] = seq + 1
        placed = _Placed(route.room_id, seq, route.version, None, route.binding, route.participant_id, route.participant_name)
        places.append(placed)
    return places


def _from_customer(prepared: _Prepared) -> bool:
    """A customer's message (on a transport, not the console): it reopens the conversation in the inbox."""
    channel = prepared.channel
    return (
        channel is not None
        and channel.category == ChannelCategory.TRANSPORT
        and channel.channel_type != ChannelType.CONSOLE
        and prepared.message.event_type == EventType.MESSAGE
    )


def _place_by_routing(attempt: _Attempt, now: datetime) -> _Placed:
    """Steps 1-4 for a message alone, the slow way: read its route, open what is missing, cache the route."""
    prepared, after = attempt.prepared, attempt.after
    message, channel = prepared.message, prepared.channel
    # Step 2 before the room: a repeat gets its first result even if its room
    # has closed or its binding gone since.
    keys = _channel_keys(prepared)
    duplicate_id = statements.find_duplicate_id(keys) if keys else None
    if duplicate_id is not None:
        raise _Duplicate(duplicate_id)
    # Step 1: the room (none yet for a sender the channel will open one for).
    room, source_binding = route_message(message, channel)
    if room is not None and connection.vendor == "postgresql":
        # Two first messages from one sender must not make two
        # participants: take the room's row lock (held for the seq below
        # anyway) before resolving the sender, then re-read what the
        # winner may have committed. SQLite already serialises writers.
        list(Room.objects.select_for_update().filter(pk=room.id).values_list("pk", flat=True))
        if source_binding is not None and source_binding.pk is not None:
            source_binding.refresh_from_db(fields=["participant"])
    # Step 3: who sent it; identity hooks may identify, challenge or reject.
    participant, decision = participant_for(message, channel, room, source_binding, prepared.hooks)
    if decision is not None and decision.action == HookAction.BLOCK and not decision.challenge:
        raise _Rejected(InboundResult("rejected", None, room.id if room else None, reason=decision.reason))
    if room is None:
        # A new sender the channel admits (route_message checked its policy).
        room, source_binding = open_room_for_channel(
            channel, message.sender, room_id=message.room_id if message.reserved_room else None
        )
        after.room_created = room.id
    if participant is not None and participant._state.adding:
        _add_participant(participant, room, source_binding, after)
    # Step 4 (the row lock is held to commit).
    taken = statements.take_seq(room.id, now, reopen=_from_customer(prepared))
    if taken is None:
        raise Conflict(f"room '{room.id}' is closed", code="room_closed")
    participant_id = participant.id if participant else None
    participant_name = participant.display_name if participant else ""
    if attempt.route_key is not None and source_binding is not None and decision is None:
        # Once committed, the sender's next message takes the cached way.
        route = route_cache.Route(room.id, source_binding, participant_id, participant_name, taken[1])
        after.routes.append((attempt.route_key, route))
    return _Placed(room.id, taken[0], taken[1], room, source_binding, participant_id, participant_name, decision)


def _add_participant(participant: Participant, room: Room, binding: ChannelBinding | None, after: AfterCommit) -> None:
    """Save a sender's new participant in ``room``; the binding it came on carries it from now on."""
    participant.room = room
    participant.save(force_insert=True)
    if participant.identification == IdentificationStatus.IDENTIFIED:
        after.identified_participant = participant.id
    if binding is not None and binding.participant_id is None and binding.address:
        binding.participant = participant
        binding.save(update_fields=["participant"])


def _compose_and_store(
    attempts: Sequence[_Attempt], places: Sequence[_Placed], now: datetime
) -> list[tuple[RoomEvent, list[Delivery]]]:
    """Steps 5-7 for each message in turn, then every event and its Delivery rows written.

    Rows are written in as few round trips as the hooks allow: all at the end,
    unless a hook is about to query. Then the messages composed before its own
    are written first, so it sees the room as if its message were alone.
    """
    composed: list[tuple[RoomEvent, list[Delivery]]] = []
    written = 0

    def write_composed() -> None:
        nonlocal written
        if written < len(composed):
            rows = composed[written:]
            statements.insert_all([[event for event, _ in rows], [d for _, deliveries in rows for d in deliveries]])
            written = len(composed)

    for attempt, placed in zip(attempts, places, strict=True):
        composed.append(_compose(attempt, placed, now, write_composed))
    write_composed()
    return composed


def _compose(
    attempt: _Attempt,
    placed: _Placed,
    now: datetime,
    before_hook_query: Callable[[], None],
) -> tuple[RoomEvent, list[Delivery]]:
    """The event (unsaved) after the blocking rules and hooks, and its Delivery rows.

    ``before_hook_query`` runs before a hook's first query (a batch writes the
    events before this one there, so the hook sees them).
    """
    prepared, after = attempt.prepared, attempt.after
    message, channel = prepared.message, prepared.channel
    room_id = placed.room_id
    event = new_instance(
        RoomEvent,
        {
            "room_id": room_id,
            "seq": placed.seq,
            "type": message.event_type,
            "direction": message.direction,
            "source_channel_id": channel.id if channel else None,
            "source_participant_id": placed.participant_id,
            "provider_message_id": message.provider_message_id,
            "idempotency_key": message.idempotency_key,
            "content": prepared.content,
            "visibility": _visibility_of(message, placed.source_binding),
            "chain_depth": message.chain_depth,
            "parent_event_id": message.parent_event_id,
            "correlation_id": message.correlation_id,
            "metadata": message.metadata,
            "created_at": now,
        },
    )
    bindings = route_cache.room_bindings(room_id, placed.version, store=False)
    after.bindings = (room_id, placed.version, bindings)
    # Step 5 (with the other rules that block before any hook).
    block_reason = _pre_broadcast_block(event, channel, placed.source_binding, placed.identity_decision)
    if block_reason:
        _block(event, block_reason)
    # Step 6.
    if event.status != EventStatus.BLOCKED and hooks.registry.has(HookTrigger.BEFORE_BROADCAST):
        ctx = HookContext(
            room_id=room_id,
            channel_id=channel.id if channel else None,
            channel_type=channel.channel_type if channel else None,
            direction=message.direction,
            room=placed.room,
            bindings=bindings,
        )
        _run_before_broadcast(event, ctx, after, prepared.hooks, before_hook_query)
    if event.status != EventStatus.BLOCKED and event.type in _CHANGE_TYPES:
        _apply_edit(event, room_id, placed.participant_id, channel, now)
    # Step 7: who gets it.
    if event.status != EventStatus.DELIVERED:
        return event, []
    return event, plan_fanout(event, bindings, placed.source_binding, after)


def _settle(
    attempt: _Attempt,
    placed: _Placed,
    event: RoomEvent,
    deliveries: list[Delivery],
    now: datetime,
) -> InboundResult:
    """What follows the event's INSERT in its transaction; the caller's result."""
    prepared, after = attempt.prepared, attempt.after
    channel, record = prepared.channel, prepared.hooks

    def observe(kind: str, summary: str, data: dict[str, Any]) -> None:
        obs = Observation.objects.create(room_id=placed.room_id, event=event, kind=kind, summary=summary[:2000], data=data)
        after.observation_ids.append(obs.id)

    if prepared.address_problem:
        observe(
            "invalid_address",
            f"Sender kept as given on {channel.id}: {prepared.address_problem}",
            {"channel_id": channel.id, "sender": prepared.message.sender[:255], "problem": prepared.address_problem},
        )
    for d in deliveries:
        if d.status == DeliveryStatus.PENDING:
            after.delivery_ids.append(d.id)
            continue
        observe(
            TRANSCODING_FAILED,
            f"Not sent to {d.channel_id} {d.recipient}: {d.last_error}",
            {"delivery_id": d.id, "channel_id": d.channel_id, "recipient": d.recipient, "reason": d.last_error},
        )
        after.failed_delivery_ids.append(d.id)
    for failure in record.failures:
        observe(
            "hook_failed",
            f"Hook {failure.hook} ({failure.trigger}) failed and was skipped: {failure.error}",
            {"hook": failure.hook, "trigger": failure.trigger, "error": failure.error},
        )
    if event.status == EventStatus.BLOCKED and event.blocked_by == "chain_depth_exceeded":
        observe(
            "chain_depth_exceeded",
            f"Event at chain depth {event.chain_depth} blocked (max {settings.ROOMKIT_MAX_CHAIN_DEPTH}).",
            {"chain_depth": event.chain_depth, "max": settings.ROOMKIT_MAX_CHAIN_DEPTH},
        )
    decision = placed.identity_decision
    if decision is not None and decision.challenge:
        prompt, prompt_delivery = challenge_event(
            placed.room_id, placed.seq, channel, placed.source_binding, decision, event, now
        )
        after.extra_events.append(prompt)
        if prompt_delivery is not None:
            # The sender is waiting for the question: send it on commit like any
            # planned delivery instead of leaving it to the outbox sweeper.
            after.delivery_ids.append(prompt_delivery.id)

    after.event = event
    after.display_name = placed.participant_name
    return InboundResult(
        "blocked" if event.status == EventStatus.BLOCKED else "stored",
        event,
        placed.room_id,
        reason=event.blocked_by,
        deliveries=len(deliveries),
    )


def _run_after_commit(afters: list[AfterCommit]) -> None:
    # Committed: the next batch need not wait for this one's fan-out.
    _group.hand_over()
    with realtime.sent_together():
        for after in afters:
            try:
                after.run()
            except Exception:  # one message's follow-up must not cost the others theirs
                logger.exception("after-commit work of event %s failed", after.event.id if after.event else None)


# --- What the steps are made of.


def _visibility_of(message: InboundMessage, binding: ChannelBinding | None) -> str:
    if message.visibility:
        return message.visibility
    if message.event_type == EventType.NOTE:
        return Visibility.INTERNAL
    return binding.visibility if binding is not None else Visibility.ALL


def _block(event: RoomEvent, reason: str) -> None:
    event.status = EventStatus.BLOCKED
    event.blocked_by = reason[:255]


def _pre_broadcast_block(
    event: RoomEvent, channel: Channel | None, binding: ChannelBinding | None, decision: hooks.HookResult | None
) -> str:
    """Rules that block before any hook runs: loops, access, mute, identity."""
    if event.chain_depth > settings.ROOMKIT_MAX_CHAIN_DEPTH:
        return "chain_depth_exceeded"
    if decision is not None and decision.challenge:
        return "identity_challenge"
    if binding is not None and event.type != EventType.NOTE:
        if not can_send(binding.access):
            return f"access:{binding.access}"
        if binding.muted:
            return "muted"
    return ""


def _run_before_broadcast(
    event: RoomEvent,
    ctx: HookContext,
    after: AfterCommit,
    record: hooks.HookRecord,
    before_hook_query: Callable[[], None] | None,
) -> None:
    if not hooks.registry.has(HookTrigger.BEFORE_BROADCAST):
        return
    # Each decision is applied before the next hook runs: it sees the event as
    # modified so far, and nothing runs after a block.
    decisions = hooks.iter_sync_hooks(
        HookTrigger.BEFORE_BROADCAST, event, ctx, record=record, before_first_query=before_hook_query
    )
    for h, result in decisions:
        for t in result.tasks:
            task = Task.objects.create(
                room_id=event.room_id,
                title=str(t.get("title", ""))[:255],
                description=str(t.get("description", "")),
                metadata=t.get("metadata", {}),
            )
            after.task_ids.append(task.id)
        for o in result.observations:
            obs = Observation.objects.create(
                room_id=event.room_id,
                kind=str(o.get("kind", h.name))[:64],
                summary=str(o.get("summary", "")),
                data=o.get("data", {}),
            )
            after.observation_ids.append(obs.id)
        if result.action == HookAction.BLOCK:
            _block(event, f"{h.name}: {result.reason}" if result.reason else h.name)
            return
        if result.action == HookAction.MODIFY:
            if result.content is not None:
                try:
                    event.content = validate_content(result.content)
                except InvalidInput:
                    logger.warning("hook %s returned invalid content; modification ignored", h.name)
            if result.metadata:
                try:
                    check_storable_json(result.metadata, "metadata")
                except InvalidInput:
                    logger.warning("hook %s returned metadata that cannot be stored; modification ignored", h.name)
                else:
                    event.metadata = {**event.metadata, **result.metadata}


def _apply_edit(event: RoomEvent, room_id: str, participant_id: str | None, channel: Channel | None, now) -> None:
    target_id = event.content.get("target_event_id")
    if event.content.get("type") != event.type or not target_id:
        raise InvalidInput(f"a {event.type} event needs edit/delete content with target_event_id")
    target = RoomEvent.objects.filter(pk=target_id, room_id=room_id).first()
    if target is None:
        raise NotFound(f"no event '{target_id}' in this room", code="unknown_event")
    if target.type != EventType.MESSAGE or target.deleted_at is not None:
        raise Conflict("only a live message can be edited or deleted", code="not_editable")
    privileged = channel is not None and channel.channel_type in (ChannelType.CONSOLE, ChannelType.API)
    if not privileged and (participant_id is None or target.source_participant_id != participant_id):
        raise Forbidden("only the author can edit or delete a message", code="not_author")
    if event.type == EventType.EDIT:
        RoomEvent.objects.filter(pk=target.pk).update(edited_at=now)
    else:
        RoomEvent.objects.filter(pk=target.pk).update(deleted_at=now)


def event_text(event: RoomEvent) -> str:
    """Plain text of an event's content (for hooks, search and logs)."""
    return content_text(event.content)
