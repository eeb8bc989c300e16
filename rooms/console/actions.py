"""Operator console services: replies, notes, room and binding actions, read markers, audit.

The admin views only parse the request, check the user's permission and call
one of these. Every action an operator takes is done by the same services the
rest of the project uses (the inbound path for messages, ``rooms.services``
for the lifecycle, the delivery and agents services) and leaves an
``AuditEntry`` in the same transaction: if the change is refused, no audit row
claims it happened.

Actions whose rules belong to another app (a delivery's retry, an AI
takeover, handback or handoff) are registered by that app
(``rooms.registries.register_console_action``); ``rooms`` imports none of
them, and without the app the action is unknown.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, Group, Permission
from django.db import transaction
from django.utils import timezone

from rooms import registries, services
from rooms.console.inbox import INBOX_ACTIONS, operator_public_name
from rooms.enums import Access, ChannelType, EventType, Visibility
from rooms.errors import InvalidInput, NotFound
from rooms.inbound import InboundMessage, InboundResult, process_inbound
from rooms.models import AuditEntry, Channel, ChannelBinding, Room, RoomReadMarker

CONSOLE_CHANNEL_ID = "console"
OPERATOR_GROUP = "operator"
VIEWER_GROUP = "viewer"
OPERATE_PERMISSION = "rooms.operate_console"
MAX_REPLY_CHARS = 10_000

# The models an operator or a viewer reads in the console.
_VIEWED_MODELS = [
    ("rooms", "room"),
    ("rooms", "roomevent"),
    ("rooms", "channelbinding"),
    ("rooms", "participant"),
    ("rooms", "task"),
    ("rooms", "observation"),
    ("rooms", "delivery"),
    ("rooms", "auditentry"),
    ("rooms", "identity"),
    ("rooms", "label"),
    ("rooms", "cannedresponse"),
    ("agents", "agent"),
    ("agents", "pipeline"),
    ("agents", "generation"),
]


def can_view_console(user: Any) -> bool:
    """Staff who belong to the console (superusers, operators, viewers) may read it."""
    return bool(user.is_active and user.is_staff)


def can_operate(user: Any) -> bool:
    """Operators (and superusers) may reply and act; viewers only read."""
    return bool(user.is_active and user.is_staff and user.has_perm(OPERATE_PERMISSION))


def console_channel() -> Channel:
    """The operator console's own channel (created on first use)."""
    return services.ensure_system_channel(CONSOLE_CHANNEL_ID, ChannelType.CONSOLE, "Operator console")


def audit_record(
    *, user: AbstractBaseUser | None, action: str, room_id: str | None = None, target: str = "", data: dict | None = None
) -> AuditEntry:
    """Write one audit row: who did ``action`` on what, with its parameters."""
    return AuditEntry.objects.create(
        user=user if user is not None and user.pk else None,
        username=user.get_username() if user is not None else "",
        action=action[:64],
        room_id=room_id,
        target=str(target)[:255],
        data=data or {},
    )


def _clean_text(text: str) -> str:
    text = (text or "").strip()
    if not text:
        raise InvalidInput("the message is empty", code="empty_message")
    if len(text) > MAX_REPLY_CHARS:
        raise InvalidInput(f"the message is longer than {MAX_REPLY_CHARS} characters", code="message_too_long")
    return text


def console_reply(
    *, user: AbstractBaseUser, room_id: str, text: str, idempotency_key: str | None = None, attachment: Any = None
) -> InboundResult:
    """Post a human operator's message into the room through the inbound path.

    It is delivered to every transport channel of the room, like any message.
    ``idempotency_key`` (the form's one-time token) makes a double submit post
    once. ``attachment``: an uploaded image, sent as media with ``text`` as its
    caption (then ``text`` may be empty).
    """
    return _console_message(
        user=user, room_id=room_id, text=text, idempotency_key=idempotency_key, note=False, attachment=attachment
    )


def console_note(
    *, user: AbstractBaseUser, room_id: str, text: str, idempotency_key: str | None = None, attachment: Any = None
) -> InboundResult:
    """Add a note to the room's timeline that only operators see (visibility ``internal``)."""
    return _console_message(
        user=user, room_id=room_id, text=text, idempotency_key=idempotency_key, note=True, attachment=attachment
    )


def _attachment_content(attachment: Any, caption: str) -> dict[str, Any]:
    store = registries.media_store()
    if store is None:
        raise InvalidInput("attachments cannot be stored here (no media store is installed)", code="no_media_store")
    content: dict[str, Any] = {"type": "media", **store(attachment)}
    if caption:
        content["caption"] = caption
    return content


def _console_message(
    *, user: AbstractBaseUser, room_id: str, text: str, idempotency_key: str | None, note: bool, attachment: Any = None
) -> InboundResult:
    if attachment is not None:
        caption = (text or "").strip()
        if len(caption) > MAX_REPLY_CHARS:
            raise InvalidInput(f"the caption is longer than {MAX_REPLY_CHARS} characters", code="message_too_long")
        if not Room.objects.filter(pk=room_id).exists():
            raise NotFound(f"unknown room '{room_id}'", code="unknown_room")  # before anything is stored
        content, body = _attachment_content(attachment, caption), caption
    else:
        body = _clean_text(text)
        content = None
    channel = console_channel()
    with transaction.atomic():
        result = process_inbound(
            InboundMessage(
                channel_id=channel.id,
                room_id=room_id,
                sender=user.get_username(),
                display_name=operator_public_name(user),
                text=None if content else body,
                content=content,
                event_type=EventType.NOTE if note else EventType.MESSAGE,
                visibility=Visibility.INTERNAL if note else None,
                idempotency_key=idempotency_key or None,
                metadata={"operator": user.get_username()},
            )
        )
        if not result.duplicate:
            audit_record(
                user=user,
                action="note" if note else "reply",
                room_id=room_id,
                target=result.event_id or "",
                data={"seq": result.seq, "status": result.status, "chars": len(body)},
            )
    return result


def console_mark_read(*, user: AbstractBaseUser, room_id: str, seq: int) -> int:
    """Move the room's operator read marker forward to ``seq`` (never back); returns the marker."""
    now = timezone.now()
    with transaction.atomic():
        marker, _ = RoomReadMarker.objects.select_for_update().get_or_create(room_id=room_id)
        if seq > marker.seq:
            marker.seq = seq
            marker.read_by = user if user.pk else None
            marker.read_at = now
            marker.save(update_fields=["seq", "read_by", "read_at"])
    return marker.seq


@dataclass(frozen=True)
class ActionOutcome:
    """What an action did, in words for the operator."""

    message: str


def _binding_of(room_id: str, binding_id: Any) -> ChannelBinding:
    try:
        pk = int(binding_id)
    except (TypeError, ValueError) as exc:
        raise InvalidInput("a binding id is required", code="invalid_binding") from exc
    binding = ChannelBinding.objects.filter(pk=pk, room_id=room_id).first()
    if binding is None:
        raise NotFound(f"no binding {pk} in this room", code="unknown_binding")
    return binding


def _pause(user: AbstractBaseUser, room_id: str, params: dict[str, str]) -> ActionOutcome:
    services.room_pause(room_id=room_id, reason=params.get("reason", "")[:200] or f"paused by {user.get_username()}")
    return ActionOutcome("Room paused.")


def _close(user: AbstractBaseUser, room_id: str, params: dict[str, str]) -> ActionOutcome:
    services.room_close(room_id=room_id, reason=params.get("reason", "")[:200] or f"closed by {user.get_username()}")
    return ActionOutcome("Room closed.")


def _reopen(user: AbstractBaseUser, room_id: str, params: dict[str, str]) -> ActionOutcome:
    services.room_reopen(room_id=room_id)
    return ActionOutcome("Room reopened.")


def _mute(user: AbstractBaseUser, room_id: str, params: dict[str, str]) -> ActionOutcome:
    b = _binding_of(room_id, params.get("binding"))
    services.channel_mute(room_id=room_id, channel_id=b.channel_id, address=b.address)
    return ActionOutcome(f"{b} muted.")


def _unmute(user: AbstractBaseUser, room_id: str, params: dict[str, str]) -> ActionOutcome:
    b = _binding_of(room_id, params.get("binding"))
    services.channel_unmute(room_id=room_id, channel_id=b.channel_id, address=b.address)
    return ActionOutcome(f"{b} unmuted.")


def _detach(user: AbstractBaseUser, room_id: str, params: dict[str, str]) -> ActionOutcome:
    b = _binding_of(room_id, params.get("binding"))
    services.channel_detach(room_id=room_id, channel_id=b.channel_id, address=b.address)
    return ActionOutcome(f"{b} detached.")


def _set_access(user: AbstractBaseUser, room_id: str, params: dict[str, str]) -> ActionOutcome:
    b = _binding_of(room_id, params.get("binding"))
    access = params.get("access", "")
    if access not in Access.values:
        raise InvalidInput(f"unknown access '{access}'", code="invalid_access")
    services.channel_set_access(room_id=room_id, channel_id=b.channel_id, address=b.address, access=access)
    return ActionOutcome(f"{b} access set to {access}.")


def _timer_value(raw: str | None, name: str) -> int | None:
    if raw is None or str(raw).strip() == "":
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise InvalidInput(f"{name} must be a whole number of seconds", code="invalid_timer") from exc
    if not 0 < value <= 365 * 24 * 3600:
        raise InvalidInput(f"{name} must be between 1 second and a year", code="invalid_timer")
    return value


def _set_timers(user: AbstractBaseUser, room_id: str, params: dict[str, str]) -> ActionOutcome:
    """The room's own timers (empty: none); the sweeper applies them (``rooms.services.sweep_room_timers``)."""
    inactive = _timer_value(params.get("inactive_after_seconds"), "inactive_after_seconds")
    closed = _timer_value(params.get("closed_after_seconds"), "closed_after_seconds")
    with transaction.atomic():
        Room.objects.select_for_update().filter(pk=room_id).update(inactive_after_seconds=inactive, closed_after_seconds=closed)
    return ActionOutcome(f"Timers set: pause after {inactive or '—'} s idle, close {closed or '—'} s after pausing.")


ROOM_ACTIONS: dict[str, Callable[[AbstractBaseUser, str, dict[str, str]], ActionOutcome]] = {
    "pause": _pause,
    "close": _close,
    "reopen": _reopen,
    "mute": _mute,
    "unmute": _unmute,
    "set_access": _set_access,
    "detach": _detach,
    "set_timers": _set_timers,
}


def _outcome_of(fn: registries.ConsoleAction) -> Callable[[AbstractBaseUser, str, dict[str, str]], ActionOutcome]:
    return lambda user, room_id, params: ActionOutcome(fn(user, room_id, params))


# The inbox's: assignment, status, snooze, labels.
ROOM_ACTIONS.update({name: _outcome_of(fn) for name, fn in INBOX_ACTIONS.items()})


def console_room_action(*, user: AbstractBaseUser, room_id: str, action: str, params: dict[str, str]) -> ActionOutcome:
    """Run one operator action on a room through its service, and audit it.

    The audit row commits with the change, or not at all: a refused action
    (``RoomKitError``) rolls both back.
    """
    fn = ROOM_ACTIONS.get(action)
    if fn is None:
        registered = registries.console_action(action)
        if registered is None:
            raise InvalidInput(f"unknown action '{action}'", code="unknown_action")
        fn = _outcome_of(registered)
    if not Room.objects.filter(pk=room_id).exists():
        raise NotFound(f"unknown room '{room_id}'", code="unknown_room")
    with transaction.atomic():
        outcome = fn(user, room_id, params)
        audit_record(user=user, action=action, room_id=room_id, target=_audit_target(action, params), data=_audit_data(params))
    return outcome


_AUDITED_PARAMS = frozenset(
    {"binding", "delivery", "agent", "access", "reason", "inactive_after_seconds", "closed_after_seconds"}
    | {"assignee", "team", "status", "until", "labels"}
)


def _audit_target(action: str, params: dict[str, str]) -> str:
    for key in ("binding", "delivery", "agent"):
        if params.get(key):
            return f"{key}:{params[key]}"
    return ""


def _audit_data(params: dict[str, str]) -> dict[str, str]:
    return {k: str(v)[:200] for k, v in params.items() if k in _AUDITED_PARAMS}


def console_send_test_message(*, user: AbstractBaseUser, channel_id: str, recipient: str, text: str = "") -> InboundResult:
    """Send a test message to ``recipient`` on ``channel_id`` through the delivery path.

    A room named for the test is opened with the channel attached at the
    recipient's address, and the operator's message is posted into it: the
    inbound path plans the delivery and the channel's adapter sends it.
    """
    recipient = (recipient or "").strip()
    if not recipient:
        raise InvalidInput("a recipient address is required", code="invalid_recipient")
    channel = Channel.objects.filter(pk=channel_id).first()
    if channel is None:
        raise NotFound(f"unknown channel '{channel_id}'", code="unknown_channel")
    body = _clean_text(text or f"RoomKit test message for channel {channel.id}")
    with transaction.atomic():
        room = services.room_create(name=f"Test message: {channel.id} → {recipient}"[:200], metadata={"console_test": True})
        services.channel_attach(room_id=room.id, channel_id=channel.id, address=recipient[:255])
        result = _console_message(user=user, room_id=room.id, text=body, idempotency_key=uuid.uuid4().hex, note=False)
        audit_record(
            user=user, action="send_test_message", room_id=room.id, target=f"channel:{channel.id}", data={"recipient": recipient}
        )
    return result


def console_groups_ensure() -> tuple[Group, Group]:
    """Create (or repair) the "operator" and "viewer" groups with their permissions.

    Both read the console's models; operators also have ``rooms.operate_console``
    and keep the team's saved replies and labels.
    """
    view_perms = []
    for app_label, model in _VIEWED_MODELS:
        # A model of an app that is not installed simply has no permission row.
        view_perms.extend(Permission.objects.filter(content_type__app_label=app_label, codename=f"view_{model}"))
    operate = Permission.objects.get(content_type__app_label="rooms", codename="operate_console")
    keep = list(
        Permission.objects.filter(
            content_type__app_label="rooms",
            codename__in=[f"{verb}_{model}" for verb in ("add", "change", "delete") for model in ("cannedresponse", "label")],
        )
    )
    with transaction.atomic():
        operator, _ = Group.objects.get_or_create(name=OPERATOR_GROUP)
        viewer, _ = Group.objects.get_or_create(name=VIEWER_GROUP)
        viewer.permissions.set(view_perms)
        operator.permissions.set([*view_perms, operate, *keep])
    return operator, viewer
