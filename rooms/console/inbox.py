"""The operators' inbox: assignment, conversation status, snoozing, labels, presence, typing and read receipts.

The inbox's state of a conversation lives on its room (``assignee``, ``team``,
``conversation_status``, ``snoozed_until``, ``labels``); the room's lifecycle
(``status``: active, paused, closed) is the engine's and is not touched here.
The state-changing actions are console actions (``ROOM_ACTIONS`` in
``rooms.console.actions`` takes them from ``INBOX_ACTIONS``): audited in the
same transaction, and announced to every operator's inbox after commit.

A customer's message puts a pending, snoozed or resolved conversation back to
open in the inbound path's own room update (``rooms.inbound.statements``), and
``wake_snoozed`` (run by the room sweeper) reopens a snooze that ran out.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from rooms import registries, services
from rooms.enums import ChannelType, ConversationStatus, ParticipantRole
from rooms.errors import InvalidInput, NotFound
from rooms.models import Label, OperatorPresence, Participant, Room
from rooms.realtime import broadcast

# The statuses an operator sets by hand (snoozed is set with a time, by ``snooze``).
_SETTABLE = (ConversationStatus.OPEN, ConversationStatus.PENDING, ConversationStatus.RESOLVED)
MAX_SNOOZE = timedelta(days=365)


def operator_public_name(user: Any) -> str:
    """How customers see an operator (join notices, typing, their replies' name): first name, else full name, else login."""
    first = (getattr(user, "first_name", "") or "").strip()
    full = (user.get_full_name() if hasattr(user, "get_full_name") else "").strip()
    return first or full or user.get_username()


def _announce(room_id: str, **change: Any) -> None:
    transaction.on_commit(lambda: broadcast.announce_room_changed(room_id, **change))


def _locked(room_id: str) -> Room:
    room = Room.objects.select_for_update().filter(pk=room_id).first()
    if room is None:
        raise NotFound(f"unknown room '{room_id}'", code="unknown_room")
    return room


# --- actions (audited by rooms.console.actions.console_room_action) ---------------------------


def _assign(user: AbstractBaseUser, room_id: str, params: dict[str, str]) -> str:
    """``assignee``: "me", a user id, or "" for nobody; ``team``: a group id, or "" for none (kept if absent)."""
    room = _locked(room_id)
    changes: list[str] = ["assignee"]
    raw = (params.get("assignee") or "").strip()
    if raw == "me":
        assignee = user
    elif raw:
        assignee = _operator(raw)
    else:
        assignee = None
    room.assignee = assignee
    if "team" in params:
        team_id = (params.get("team") or "").strip()
        room.team = _group(team_id) if team_id else None
        changes.append("team")
    room.save(update_fields=changes)
    if assignee is not None:
        OperatorPresence.objects.update_or_create(user=assignee, defaults={"last_assigned_at": timezone.now()})
    _announce(room_id, assignee=assignee.pk if assignee else None)
    who = "you" if assignee == user else (assignee.get_username() if assignee else "nobody")
    return f"Assigned to {who}" + (f" ({room.team.name})." if room.team else ".")


def _operator(raw: str) -> AbstractBaseUser:
    from rooms.console.actions import OPERATE_PERMISSION

    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):  # an id the database can hold, or a 400
        raise InvalidInput("assignee must be 'me', a user id or empty", code="invalid_assignee")
    pk = int(raw)
    user = get_user_model().objects.filter(pk=pk, is_active=True, is_staff=True).first()
    if user is None or not user.has_perm(OPERATE_PERMISSION):
        raise InvalidInput(f"user {pk} is not an operator", code="invalid_assignee")
    return user


def _group(raw: str) -> Group:
    group = Group.objects.filter(pk=int(raw)).first() if raw.isascii() and raw.isdigit() and len(raw) <= 9 else None
    if group is None:
        raise InvalidInput(f"unknown team '{raw}'", code="invalid_team")
    return group


def _set_status(user: AbstractBaseUser, room_id: str, params: dict[str, str]) -> str:
    status = params.get("status", "")
    if status not in _SETTABLE:
        raise InvalidInput(f"status must be one of {', '.join(_SETTABLE)}", code="invalid_status")
    room = _locked(room_id)
    room.conversation_status, room.snoozed_until = status, None
    room.save(update_fields=["conversation_status", "snoozed_until"])
    _announce(room_id, conversation_status=status)
    return {"open": "Reopened.", "pending": "Waiting on the customer.", "resolved": "Resolved."}[status]


def _resolve(user: AbstractBaseUser, room_id: str, params: dict[str, str]) -> str:
    return _set_status(user, room_id, {"status": ConversationStatus.RESOLVED})


def _snooze(user: AbstractBaseUser, room_id: str, params: dict[str, str]) -> str:
    """``until``: an ISO date-time (local to the server's time zone if it has none), or ``1h``/``4h``/``1d``/``1w``."""
    until = snooze_until(params.get("until", ""), now=timezone.now())
    room = _locked(room_id)
    room.conversation_status, room.snoozed_until = ConversationStatus.SNOOZED, until
    room.save(update_fields=["conversation_status", "snoozed_until"])
    _announce(room_id, conversation_status=ConversationStatus.SNOOZED)
    return f"Snoozed until {timezone.localtime(until):%Y-%m-%d %H:%M}."


_PRESETS = {"1h": timedelta(hours=1), "4h": timedelta(hours=4), "1d": timedelta(days=1), "1w": timedelta(weeks=1)}


def snooze_until(raw: str, *, now: datetime) -> datetime:
    """When a snooze given as a preset or an ISO date-time ends; refused if not in the future (within a year)."""
    raw = (raw or "").strip()
    if raw in _PRESETS:
        return now + _PRESETS[raw]
    try:
        parsed = parse_datetime(raw) if raw else None
    except ValueError:  # well formed but no such date (February 30th)
        parsed = None
    if parsed is None:
        raise InvalidInput("until must be a date and time (or 1h, 4h, 1d, 1w)", code="invalid_snooze")
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)
    if not now < parsed <= now + MAX_SNOOZE:
        raise InvalidInput("a snooze ends in the future, within a year", code="invalid_snooze")
    return parsed


def _set_labels(user: AbstractBaseUser, room_id: str, params: dict[str, str]) -> str:
    """``labels``: label names separated by commas (existing labels; an empty value removes them all)."""
    names = sorted({n.strip() for n in (params.get("labels") or "").split(",") if n.strip()})
    labels = list(Label.objects.filter(name__in=names))
    unknown = set(names) - {label.name for label in labels}
    if unknown:
        raise InvalidInput(f"unknown label(s): {', '.join(sorted(unknown))}", code="invalid_label")
    room = _locked(room_id)
    room.labels.set(labels)
    _announce(room_id, labels=names)
    return f"Labels: {', '.join(names)}." if names else "Labels removed."


INBOX_ACTIONS: dict[str, Callable[[AbstractBaseUser, str, dict[str, str]], str]] = {
    "assign": _assign,
    "set_status": _set_status,
    "resolve": _resolve,
    "snooze": _snooze,
    "set_labels": _set_labels,
}


def wake_snoozed(*, now: datetime | None = None) -> list[str]:
    """Put conversations whose snooze ran out back to open; their ids."""
    now = now or timezone.now()
    woken = []
    with transaction.atomic():
        rooms = Room.objects.select_for_update(skip_locked=True).filter(
            conversation_status=ConversationStatus.SNOOZED, snoozed_until__lte=now
        )
        for room_id in rooms.values_list("pk", flat=True):
            woken.append(room_id)
        Room.objects.filter(pk__in=woken).update(conversation_status=ConversationStatus.OPEN, snoozed_until=None)
        for room_id in woken:
            _announce(room_id, conversation_status=ConversationStatus.OPEN)
    return woken


# --- assignment by round robin --------------------------------------------------------------


def online_operators(team: Group | None = None) -> list[AbstractBaseUser]:
    """Operators with an inbox open and not away (of ``team`` if given), longest since an assignment first."""
    presences = OperatorPresence.objects.filter(
        sockets__gt=0, away=False, last_seen_at__gte=timezone.now() - PRESENCE_TTL, user__is_active=True, user__is_staff=True
    )
    if team is not None:
        presences = presences.filter(user__groups=team)
    ordered = presences.select_related("user").order_by(F("last_assigned_at").asc(nulls_first=True), "user_id")
    return [p.user for p in ordered]


def offer_round_robin(room_id: str) -> AbstractBaseUser | None:
    """Assign an unassigned conversation to the next online operator of its team (or of all operators).

    Called when an agent hands a conversation to a human. Nobody online: it
    stays unassigned, where the team's "Unassigned" view shows it.
    """
    with transaction.atomic():
        room = _locked(room_id)
        if room.assignee_id is not None:
            return None
        from rooms.console.actions import OPERATE_PERMISSION

        for candidate in online_operators(room.team):
            if candidate.has_perm(OPERATE_PERMISSION):
                room.assignee = candidate
                room.save(update_fields=["assignee"])
                OperatorPresence.objects.filter(user=candidate).update(last_assigned_at=timezone.now())
                _announce(room_id, assignee=candidate.pk)
                return candidate
    return None


# --- presence ---------------------------------------------------------------------------------


# An open inbox pings every minute: a count left by a process that died goes stale after this.
PRESENCE_TTL = timedelta(seconds=150)


def presence_seen(user: AbstractBaseUser) -> None:
    """An open inbox of ``user`` is still there (its socket's ping)."""
    OperatorPresence.objects.filter(user=user).update(last_seen_at=timezone.now())


def presence_joined(user: AbstractBaseUser) -> None:
    """An inbox socket of ``user`` opened: online (unless they set themselves away)."""
    presence, _ = OperatorPresence.objects.get_or_create(user=user)
    # A count left above zero by a process that died is stale: start again from this socket.
    stale = Q(last_seen_at__lt=timezone.now() - PRESENCE_TTL) | Q(last_seen_at__isnull=True)
    OperatorPresence.objects.filter(stale, pk=presence.pk).update(sockets=0)
    OperatorPresence.objects.filter(pk=presence.pk).update(sockets=F("sockets") + 1, last_seen_at=timezone.now())


def presence_left(user: AbstractBaseUser) -> None:
    """An inbox socket of ``user`` closed: offline once none is left."""
    OperatorPresence.objects.filter(user=user, sockets__gt=0).update(sockets=F("sockets") - 1, last_seen_at=timezone.now())


def presence_set_away(user: AbstractBaseUser, away: bool) -> None:
    OperatorPresence.objects.update_or_create(user=user, defaults={"away": away})


# --- typing and read receipts, seen by the customer --------------------------------------------


def operator_participant_id(user: AbstractBaseUser, room_id: str) -> str:
    """The operator's participant in the room (the one their replies come from), created if they have none yet."""
    from rooms.console.actions import console_channel

    channel = console_channel()
    username = user.get_username()
    found = Participant.objects.filter(room_id=room_id, channel=channel, address=username).values_list("pk", flat=True).first()
    if found:
        return found
    with transaction.atomic():
        room = _locked(room_id)
        participant, created = Participant.objects.get_or_create(
            room=room,
            channel=channel,
            address=username,
            defaults={"display_name": operator_public_name(user)[:200], "role": ParticipantRole.OPERATOR},
        )
        if created:
            # Cached routes check the room's routing version: a new participant changes it.
            Room.objects.filter(pk=room_id).update(routing_version=F("routing_version") + 1)
    return participant.pk


def operator_typing(user: AbstractBaseUser, room_id: str, typing: bool) -> None:
    """Show the customer that the operator is typing (or stopped)."""
    participant_id = operator_participant_id(user, room_id)
    kind = "typing_start" if typing else "typing_stop"
    # role: the inbox shows the customer's typing, not its own team's.
    broadcast.publish_ephemeral(
        room_id, kind, participant_id=participant_id, display_name=operator_public_name(user), role=ParticipantRole.OPERATOR
    )
    registries.relay_activity(room_id, kind)  # Messenger, Telegram, WhatsApp show it too


def operator_read(user: AbstractBaseUser, room_id: str, seq: int) -> int:
    """The operator read the conversation up to ``seq``: the team's marker moves, and the customer sees "Seen"."""
    from rooms.console.actions import console_mark_read

    before = Room.objects.filter(pk=room_id).values_list("operator_read_marker__seq", flat=True).first() or 0
    marker = console_mark_read(user=user, room_id=room_id, seq=seq)
    if marker > before:
        broadcast.announce_room_changed(room_id, lists_only=True, read_seq=marker)  # the lists' unread counts
        registries.relay_activity(room_id, "read")  # "seen" on the customer's messaging app
    if seq >= 1:
        services.participant_mark_read(participant_id=operator_participant_id(user, room_id), seq=seq)
    return marker


def is_customer_channel_type(channel_type: str) -> bool:
    """Whether people on this channel type are customers (not the console, not an agent)."""
    return channel_type not in (ChannelType.CONSOLE, ChannelType.AI)


def inbox_action(*, user: AbstractBaseUser, room_id: str, action: str, params: dict[str, str]) -> str:
    """One action from the inbox's side panel, audited; taking over also assigns an unassigned conversation to you."""
    from rooms.console.actions import console_room_action

    with transaction.atomic():
        outcome = console_room_action(user=user, room_id=room_id, action=action, params=params).message
        if action == "takeover" and not Room.objects.filter(pk=room_id, assignee__isnull=False).exists():
            console_room_action(user=user, room_id=room_id, action="assign", params={"assignee": "me"})
        if action in ("takeover", "handback", "handoff"):
            _announce(room_id, ai=action)
    return outcome
