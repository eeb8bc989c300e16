"""The one inbound path: everything that enters a room goes through here.

``process_inbound`` is the only writer of ``RoomEvent`` rows. Webhook views,
sockets, AI replies, operator replies, the REST API and ``simulate_inbound``
all call it. In one transaction it routes the message to a room, drops
duplicates, resolves the sender, takes the room's next ``seq`` under a row
lock, enforces chain depth, runs ``BEFORE_BROADCAST`` hooks, stores the event
and plans its deliveries. Fan-out, enqueues and ``AFTER_BROADCAST`` hooks run
only after the commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from rooms import hooks, realtime, registries, route_cache
from rooms.content import content_text, validate_content
from rooms.enums import (
    PUSH_CHANNEL_TYPES,
    ChannelCategory,
    ChannelType,
    Direction,
    EventStatus,
    EventType,
    IdentificationStatus,
    ParticipantRole,
    RoomStatus,
    Visibility,
)
from rooms.errors import Conflict, Forbidden, InvalidInput, NotFound
from rooms.fast_insert import insert_row, insert_rows
from rooms.hooks import HookAction, HookContext, HookTrigger
from rooms.identity import IdentityResult, resolve_identity
from rooms.models import (
    Channel,
    ChannelBinding,
    Delivery,
    Identity,
    Observation,
    Participant,
    Room,
    RoomEvent,
    Task,
)
from rooms.route_cache import route_key
from rooms.selectors import get_channel
from rooms.serializers import event_to_dict
from rooms.transcoding import transcode
from rooms.visibility import can_send, should_receive, visible_to

logger = logging.getLogger(__name__)

# Channel types whose inbound may target a room without a prior binding: our
# own entry points and the agents; they are attached on first use.
_SELF_ATTACHING_TYPES = frozenset({ChannelType.API, ChannelType.CONSOLE, ChannelType.AI})
_MAX_KEY = 255
_EVENT_TYPES = frozenset(EventType.values)
_MAX_CHAIN_DEPTH_VALUE = 32767
_CHANGE_TYPES = frozenset({EventType.EDIT, EventType.DELETE})


@dataclass
class InboundMessage:
    """A message arriving from any edge. ``content`` is typed content, or give ``text``."""

    channel_id: str | None
    sender: str = ""
    content: dict[str, Any] | None = None
    text: str | None = None
    provider_message_id: str | None = None
    idempotency_key: str | None = None
    room_id: str | None = None
    participant_id: str | None = None
    display_name: str | None = None
    event_type: str = EventType.MESSAGE
    direction: str = Direction.INBOUND
    visibility: str | None = None
    chain_depth: int = 0
    parent_event_id: str | None = None
    correlation_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class InboundResult:
    status: str  # "stored" | "blocked" | "duplicate" | "rejected"
    event: RoomEvent | None
    room_id: str | None
    reason: str = ""
    deliveries: int = 0

    @property
    def duplicate(self) -> bool:
        return self.status == "duplicate"

    @property
    def blocked(self) -> bool:
        return self.status == "blocked" or (self.event is not None and self.event.status == EventStatus.BLOCKED)

    @property
    def seq(self) -> int | None:
        return self.event.seq if self.event else None

    @property
    def event_id(self) -> str | None:
        return self.event.id if self.event else None


@dataclass
class _AfterCommit:
    """Work owed once the transaction commits; nothing here touches the rows."""

    event: RoomEvent | None = None
    display_name: str = ""
    public: bool = False
    delivery_ids: list[int] = field(default_factory=list)
    intelligence: list[tuple[str, int]] = field(default_factory=list)  # (channel_type, binding_id)
    room_created: str | None = None
    identified_participant: str | None = None
    task_ids: list[str] = field(default_factory=list)
    observation_ids: list[str] = field(default_factory=list)
    extra_events: list[RoomEvent] = field(default_factory=list)
    # Cache entries to keep once the data they describe is committed.
    routes: list[tuple[tuple, route_cache.Route]] = field(default_factory=list)
    bindings: tuple[str, int, list[ChannelBinding]] | None = None

    def run(self) -> None:
        from rooms.task_queue import enqueue
        from rooms.tasks import fire_hooks_task

        for key, route in self.routes:
            route_cache.put_route(key, route)
        if self.bindings is not None:
            route_cache.store_room_bindings(*self.bindings)

        for ev, public in ([(self.event, self.public)] if self.event else []) + [(e, False) for e in self.extra_events]:
            realtime.publish_event(
                ev.room_id,
                event_to_dict(ev, display_name=self.display_name if ev is self.event else ""),
                public=public or (ev is not self.event and ev.visibility != Visibility.INTERNAL),
            )
        if self.delivery_ids:
            registries.dispatch_deliveries(self.delivery_ids)
        for channel_type, binding_id in self.intelligence:
            handler = registries.intelligence_handler(channel_type)
            if handler is not None:
                handler(self.event.id, binding_id)
        if self.room_created:
            enqueue(fire_hooks_task, HookTrigger.ON_ROOM_CREATED.value, "room", self.room_created)
        if self.identified_participant:
            enqueue(fire_hooks_task, HookTrigger.ON_PARTICIPANT_IDENTIFIED.value, "participant", self.identified_participant)
        for task_id in self.task_ids:
            enqueue(fire_hooks_task, HookTrigger.ON_TASK_CREATED.value, "task", task_id)
        for obs_id in self.observation_ids:
            enqueue(fire_hooks_task, HookTrigger.ON_OBSERVATION.value, "observation", obs_id)
        if (
            self.event is not None
            and self.event.status == EventStatus.DELIVERED
            and hooks.registry.has(HookTrigger.AFTER_BROADCAST)
        ):
            enqueue(fire_hooks_task, HookTrigger.AFTER_BROADCAST.value, "event", self.event.id)


def process_inbound(message: InboundMessage) -> InboundResult:
    """Store ``message`` as the room's next event and plan its fan-out.

    A repeat of a message already seen (same channel and idempotency key or
    provider message id) returns the first result and changes nothing.
    Raises ``RoomKitError`` subclasses (4xx) for input the caller got wrong.
    """
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
    has_key = bool(message.idempotency_key or message.provider_message_id)
    use_cache = True
    races = 0
    while True:
        after = _AfterCommit()
        try:
            with transaction.atomic():
                result = _process(message, channel, content, after, use_cache=use_cache)
                if result.status == "rejected":
                    transaction.set_rollback(True)
                else:
                    transaction.on_commit(after.run)
            return result
        except _StaleRoute:
            # The cached route no longer matches the room (a binding changed,
            # the room closed): do it again the slow way.
            use_cache = False
        except IntegrityError:
            # Lost a race with a concurrent copy of the same message (unique
            # key per channel): the retry finds the winner and returns it.
            races += 1
            if races > 1 or not has_key:
                raise


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
    # The column is a PositiveSmallIntegerField: PostgreSQL would refuse a
    # larger value with a DataError (a 500) where SQLite stores it.
    if not isinstance(message.chain_depth, int) or not 0 <= message.chain_depth <= _MAX_CHAIN_DEPTH_VALUE:
        raise InvalidInput(f"chain_depth must be an integer from 0 to {_MAX_CHAIN_DEPTH_VALUE}")


def _find_duplicate(channel: Channel, message: InboundMessage) -> RoomEvent | None:
    # Plain SQL on the unique indexes: this runs for every keyed message.
    with connection.cursor() as cur:
        for column, value in (
            ("idempotency_key", message.idempotency_key),
            ("provider_message_id", message.provider_message_id),
        ):
            if value:
                cur.execute(
                    f"SELECT id FROM rooms_roomevent WHERE source_channel_id = %s AND {column} = %s", [channel.id, value]
                )
                row = cur.fetchone()
                if row is not None:
                    return RoomEvent.objects.select_related("source_participant").get(pk=row[0])
    return None


class _StaleRoute(Exception):
    """A cached route failed its version check under the room lock."""


def _process(
    message: InboundMessage, channel: Channel | None, content: dict[str, Any], after: _AfterCommit, *, use_cache: bool
) -> InboundResult:
    if channel is not None and (message.idempotency_key or message.provider_message_id):
        dup = _find_duplicate(channel, message)
        if dup is not None:
            return InboundResult("duplicate", dup, dup.room_id)

    key = route_key(message.room_id, channel.id, message.sender, message.participant_id) if channel else None
    route = route_cache.get_route(key) if key and use_cache else None
    identity_decision = None
    room: Room | None = None
    if route is not None:
        # Fast path: a sender we have routed before. Valid only if the room's
        # routing is unchanged, checked in the statement that locks it.
        taken = _take_seq(route.room_id)
        if taken is None or taken[1] != route.version:
            route_cache.forget_route(key)
            raise _StaleRoute
        room_id, source_binding = route.room_id, route.binding
        participant_id, participant_name = route.participant_id, route.participant_name
    else:
        room, source_binding = _route(message, channel)
        if room is not None and connection.vendor == "postgresql":
            # Two first messages from one sender must not make two
            # participants: take the room's row lock (held for the seq below
            # anyway) before resolving the sender, then re-read what the
            # winner may have committed. SQLite already serialises writers.
            list(Room.objects.select_for_update().filter(pk=room.id).values_list("pk", flat=True))
            if source_binding is not None and source_binding.pk is not None:
                source_binding.refresh_from_db(fields=["participant"])
        participant, identity_decision = _participant_for(message, channel, room, source_binding)
        if identity_decision is not None and identity_decision.action == HookAction.BLOCK and not identity_decision.challenge:
            return InboundResult("rejected", None, room.id if room else None, reason=identity_decision.reason)
        if room is None:
            room, source_binding = open_room_for_channel(channel, message.sender)
            after.room_created = room.id
        if participant is not None and participant._state.adding:
            participant.room = room
            participant.save(force_insert=True)
            if participant.identification == IdentificationStatus.IDENTIFIED:
                after.identified_participant = participant.id
            if source_binding is not None and source_binding.participant_id is None and source_binding.address:
                source_binding.participant = participant
                source_binding.save(update_fields=["participant"])
        room_id = room.id
        taken = _take_seq(room_id)
        if taken is None:
            raise Conflict(f"room '{room_id}' is closed", code="room_closed")
        participant_id = participant.id if participant else None
        participant_name = participant.display_name if participant else ""
        if key and source_binding is not None and identity_decision is None:
            after.routes.append((key, route_cache.Route(room_id, source_binding, participant_id, participant_name, taken[1])))
    seq, version = taken
    now = timezone.now()
    event = RoomEvent(
        room_id=room_id,
        seq=seq,
        type=message.event_type,
        direction=message.direction,
        source_channel_id=channel.id if channel else None,
        source_participant_id=participant_id,
        provider_message_id=message.provider_message_id,
        idempotency_key=message.idempotency_key,
        content=content,
        visibility=_visibility_of(message, source_binding),
        chain_depth=message.chain_depth,
        parent_event_id=message.parent_event_id,
        correlation_id=message.correlation_id,
        metadata=message.metadata,
        created_at=now,
    )
    bindings = route_cache.room_bindings(room_id, version, store=False)
    after.bindings = (room_id, version, bindings)
    block_reason = _pre_broadcast_block(event, channel, source_binding, identity_decision)
    if block_reason:
        _block(event, block_reason)
    if event.status != EventStatus.BLOCKED and hooks.registry.has(HookTrigger.BEFORE_BROADCAST):
        ctx = HookContext(
            room_id=room_id,
            channel_id=channel.id if channel else None,
            channel_type=channel.channel_type if channel else None,
            direction=message.direction,
            room=room or Room.objects.get(pk=room_id),
            bindings=bindings,
        )
        _run_before_broadcast(event, ctx, after)
    if event.status != EventStatus.BLOCKED and event.type in (EventType.EDIT, EventType.DELETE):
        _apply_edit(event, room_id, participant_id, channel, now)
    insert_row(event)
    if event.status == EventStatus.BLOCKED and event.blocked_by == "chain_depth_exceeded":
        obs = Observation.objects.create(
            room_id=room_id,
            event=event,
            kind="chain_depth_exceeded",
            summary=f"Event at chain depth {event.chain_depth} blocked (max {settings.ROOMKIT_MAX_CHAIN_DEPTH}).",
            data={"chain_depth": event.chain_depth, "max": settings.ROOMKIT_MAX_CHAIN_DEPTH},
        )
        after.observation_ids.append(obs.id)
    if identity_decision is not None and identity_decision.challenge:
        prompt, prompt_delivery = _challenge_event(room_id, seq, channel, source_binding, identity_decision, event, now)
        after.extra_events.append(prompt)
        if prompt_delivery is not None:
            # The sender is waiting for the question: send it on commit like any
            # planned delivery instead of leaving it to the outbox sweeper.
            after.delivery_ids.append(prompt_delivery.id)

    after.event = event
    after.display_name = participant_name
    n_deliveries = 0
    if event.status == EventStatus.DELIVERED:
        n_deliveries = _plan_fanout(event, bindings, source_binding, after)
    return InboundResult(
        "blocked" if event.status == EventStatus.BLOCKED else "stored",
        event,
        room_id,
        reason=event.blocked_by,
        deliveries=n_deliveries,
    )


def _route(message: InboundMessage, channel: Channel | None) -> tuple[Room | None, ChannelBinding | None]:
    """The room this message belongs to, and the binding it arrives on."""
    if message.room_id:
        room = Room.objects.filter(pk=message.room_id).first()
        if room is None:
            raise NotFound(f"unknown room '{message.room_id}'", code="unknown_room")
        if room.status not in (RoomStatus.ACTIVE, RoomStatus.PAUSED):
            raise Conflict(f"room '{room.id}' is {room.status}", code="room_closed")
        if channel is None:
            return room, None
        binding = _binding_in_room(room, channel, message.sender, message.participant_id)
        if binding is None:
            if channel.channel_type not in _SELF_ATTACHING_TYPES and channel.category != ChannelCategory.INTELLIGENCE:
                raise Forbidden(f"channel '{channel.id}' is not attached to room '{room.id}'", code="not_attached")
            binding = ChannelBinding.objects.create(
                room=room,
                channel=channel,
                category=channel.category,
                address=message.sender if channel.category == ChannelCategory.TRANSPORT else "",
            )
        return room, binding

    if not message.sender:
        raise InvalidInput("a message without a room needs a sender address", code="no_sender")
    binding = (
        ChannelBinding.objects.filter(
            channel_id=channel.id, address=message.sender, room__status__in=(RoomStatus.ACTIVE, RoomStatus.PAUSED)
        )
        .select_related("room")
        .order_by("-room__created_at")
        .first()
    )
    if binding is not None:
        return binding.room, binding
    if not channel.creates_rooms:
        raise Forbidden(f"channel '{channel.id}' does not open rooms for new senders", code="no_room")
    if connection.vendor == "postgresql":
        # Two first messages from one new sender must not open two rooms.
        # SQLite needs nothing: BEGIN IMMEDIATE already serialises writers.
        with connection.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"route:{channel.id}:{message.sender}"])
        binding = (
            ChannelBinding.objects.filter(
                channel_id=channel.id,
                address=message.sender,
                room__status__in=(RoomStatus.ACTIVE, RoomStatus.PAUSED),
            )
            .select_related("room")
            .first()
        )
        if binding is not None:
            return binding.room, binding
    return None, None


def _binding_in_room(room: Room, channel: Channel, sender: str, participant_id: str | None) -> ChannelBinding | None:
    qs = ChannelBinding.objects.filter(room_id=room.id, channel_id=channel.id)
    if sender:
        exact = qs.filter(address=sender).first()
        if exact is not None:
            return exact
        if not participant_id:
            # A binding at another address belongs to that sender and carries
            # their participant: unless the edge names the participant, only
            # the channel bound as a whole (no address) may carry this sender.
            qs = qs.filter(address="")
    return qs.order_by("id").first()


def open_room_for_channel(channel: Channel, address: str) -> tuple[Room, ChannelBinding]:
    """A new active room with ``channel`` bound at ``address``, plus the channels it brings along.

    The room takes the channel's configured timers; ``attach_on_create`` lists
    channels (an agent, a CRM webhook) to bind into every room it opens.
    """
    now = timezone.now()
    timers = channel.config.get("room_timers") or {}
    room = Room.objects.create(
        last_activity_at=now,
        inactive_after_seconds=timers.get("inactive_after_seconds"),
        closed_after_seconds=timers.get("closed_after_seconds"),
    )
    binding = ChannelBinding.objects.create(room=room, channel=channel, category=channel.category, address=address)
    for other_id in channel.config.get("attach_on_create", []):
        other = Channel.objects.filter(pk=other_id, enabled=True).first()
        if other is not None and other.id != channel.id:
            ChannelBinding.objects.create(room=room, channel=other, category=other.category)
    return room, binding


def _participant_for(
    message: InboundMessage, channel: Channel | None, room: Room | None, binding: ChannelBinding | None
) -> tuple[Participant | None, hooks.HookResult | None]:
    """The sender's participant (unsaved if new) and any identity-hook decision."""
    if message.participant_id:
        p = Participant.objects.filter(pk=message.participant_id).first()
        if p is None or (room is not None and p.room_id != room.id):
            raise Forbidden("participant is not in this room", code="not_a_participant")
        return p, None
    if channel is None:
        return None, None
    if binding is not None and binding.participant_id:
        return Participant.objects.get(pk=binding.participant_id), None
    if channel.category == ChannelCategory.INTELLIGENCE:
        existing = Participant.objects.filter(room=room, channel=channel).first() if room else None
        return existing or Participant(
            channel=channel,
            display_name=message.display_name or channel.name or channel.id,
            role=ParticipantRole.AGENT,
            identification=IdentificationStatus.IDENTIFIED,
        ), None
    if room is not None and message.sender:
        existing = Participant.objects.filter(room=room, channel=channel, address=message.sender).first()
        if existing is not None:
            return existing, None
    role = ParticipantRole.OPERATOR if channel.channel_type == ChannelType.CONSOLE else ParticipantRole.MEMBER
    result = resolve_identity(channel=channel, address=message.sender, display_name=message.display_name)
    decision = _identity_hooks(result, message, channel, room)
    identity = result.identity
    status = result.status
    if decision is not None and decision.identity_id:
        identity = Identity.objects.filter(pk=decision.identity_id).first()
        status = IdentificationStatus.IDENTIFIED if identity else status
    elif decision is not None and decision.challenge:
        status = IdentificationStatus.CHALLENGED
    name = (
        (decision.display_name if decision else None)
        or message.display_name
        or (identity.display_name if identity else "")
        or message.sender
    )
    return Participant(
        channel=channel,
        address=message.sender,
        display_name=name[:200],
        identity=identity,
        identification=status,
        role=role,
    ), decision


def _identity_hooks(
    result: IdentityResult, message: InboundMessage, channel: Channel, room: Room | None
) -> hooks.HookResult | None:
    trigger = {
        IdentificationStatus.AMBIGUOUS: HookTrigger.ON_IDENTITY_AMBIGUOUS,
        IdentificationStatus.UNKNOWN: HookTrigger.ON_IDENTITY_UNKNOWN,
    }.get(result.status)
    if trigger is None or not hooks.registry.has(trigger):
        return None
    ctx = HookContext(
        room_id=room.id if room else None,
        channel_id=channel.id,
        channel_type=channel.channel_type,
        direction=message.direction,
        room=room,
        extra={"address": message.sender, "message": message},
    )
    for _hook, decision in hooks.iter_sync_hooks(trigger, result, ctx):
        if decision.identity_id or decision.challenge or decision.action == HookAction.BLOCK:
            return decision
    return None


def _take_seq(room_id: str) -> tuple[int, int] | None:
    """Lock the room row and hand out its next seq, in one statement.

    ``UPDATE … RETURNING`` takes the same row lock ``select_for_update`` would,
    held to commit, so seqs are gapless and unique across processes; a paused
    room wakes up on a new message. Returns (seq, routing_version), or None if
    the room is not open.
    """
    now = timezone.now()
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE rooms_room SET last_seq = last_seq + 1, last_activity_at = %s, updated_at = %s, "
            "paused_at = CASE WHEN status = 'paused' THEN NULL ELSE paused_at END, "
            "status = CASE WHEN status = 'paused' THEN 'active' ELSE status END "
            "WHERE id = %s AND status IN ('active', 'paused') RETURNING last_seq, routing_version",
            [now, now, room_id],
        )
        row = cur.fetchone()
    return (row[0], row[1]) if row is not None else None


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


def _run_before_broadcast(event: RoomEvent, ctx: HookContext, after: _AfterCommit) -> None:
    if not hooks.registry.has(HookTrigger.BEFORE_BROADCAST):
        return
    # Each decision is applied before the next hook runs: it sees the event as
    # modified so far, and nothing runs after a block.
    for h, result in hooks.iter_sync_hooks(HookTrigger.BEFORE_BROADCAST, event, ctx):
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


def _challenge_event(
    room_id: str,
    blocked_seq: int,
    channel: Channel | None,
    binding: ChannelBinding | None,
    decision: hooks.HookResult,
    parent: RoomEvent,
    now,
) -> tuple[RoomEvent, Delivery | None]:
    """The question put to a sender we could not identify, and its delivery to them only."""
    ev = RoomEvent.objects.create(
        room_id=room_id,
        seq=_take_seq(room_id)[0],
        type=EventType.SYSTEM,
        direction=Direction.OUTBOUND,
        content={"type": "text", "body": decision.challenge},
        visibility=channel.id if channel else Visibility.INTERNAL,
        parent_event=parent,
        chain_depth=parent.chain_depth + 1,
        metadata={"identity_challenge": True},
        created_at=now,
    )
    delivery = None
    if binding is not None and channel is not None and channel.channel_type not in PUSH_CHANNEL_TYPES:
        delivery = Delivery.objects.create(
            event=ev,
            binding=binding,
            channel=channel,
            recipient=binding.address,
            content=transcode(ev.content, channel.effective_capabilities()),
        )
    return ev, delivery


def _plan_fanout(event: RoomEvent, bindings: list[ChannelBinding], source: ChannelBinding | None, after: _AfterCommit) -> int:
    """Delivery rows for transport targets; intelligence targets and socket publicity."""
    source_id = source.id if source is not None else None
    transcoded: dict[str, dict[str, Any]] = {}
    deliveries: list[Delivery] = []
    public = False
    for b in bindings:
        # The channel's current settings (short TTL cache), not the copy that
        # came with a cached binding.
        ch = get_channel(b.channel_id)
        if not ch.enabled or not should_receive(b, visibility=event.visibility, source_binding_id=source_id):
            continue
        if b.category == ChannelCategory.INTELLIGENCE:
            after.intelligence.append((ch.channel_type, b.id))
            continue
        if ch.channel_type in PUSH_CHANNEL_TYPES:
            public = True
            continue
        caps = ch.effective_capabilities()
        key = repr(sorted(caps.items()))
        if key not in transcoded:
            transcoded[key] = transcode(event.content, caps)
        deliveries.append(Delivery(event=event, binding=b, channel=ch, recipient=b.address, content=transcoded[key]))
    # Sockets of this room also see events aimed at everyone or at transports,
    # even when no socket binding happens to be attached yet (operators, API).
    after.public = public or visible_to(event.visibility, channel_id="", category=ChannelCategory.TRANSPORT)
    if deliveries:
        insert_rows(deliveries)
        after.delivery_ids.extend(d.id for d in deliveries)
    return len(deliveries)


def event_text(event: RoomEvent) -> str:
    """Plain text of an event's content (for hooks, search and logs)."""
    return content_text(event.content)
