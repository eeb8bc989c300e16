"""What a room hub reads from the database to keep its sockets' event stream whole.

``rooms.realtime.broadcast.RoomHub`` hands a room's event frames to its sockets in
``seq`` order. When a frame is late or was lost by the channel layer, the
hub reads the missing events here: the database is the truth, and every
event below a ``seq`` that has been published is already committed (a seq is
taken under the room's row lock and published after its commit).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from rooms.enums import ChannelCategory, EventStatus
from rooms.inbound.visibility import visible_to
from rooms.models import Room
from rooms.selectors import room_events
from rooms.serializers import event_to_dict

PAGE = 500


def room_last_seq(room_id: str) -> int:
    """The room's highest committed ``seq`` (0 for a room that has no row yet)."""
    return Room.objects.filter(pk=room_id).values_list("last_seq", flat=True).first() or 0


def rooms_last_seqs(room_ids: list[str]) -> dict[str, int]:
    """``{room_id: last_seq}`` for the rooms that exist, read in pages."""
    found: dict[str, int] = {}
    for start in range(0, len(room_ids), PAGE):
        found.update(Room.objects.filter(pk__in=room_ids[start : start + PAGE]).values_list("pk", "last_seq"))
    return found


def room_socket_events_after(
    room_id: str, after_seq: int, *, channel_id: str, limit: int = PAGE
) -> tuple[list[dict[str, Any]], int]:
    """A page of the events a socket of ``channel_id`` sees live in the room, after ``after_seq``, in ``seq`` order.

    Returns them and the last ``seq`` the page covered (events the socket
    would not see still advance it). The same rule as live publishing:
    delivered, and visible to a transport such as the web chat.
    """
    events = room_events(room_id, after_seq=after_seq, limit=limit)
    visible = [
        event_to_dict(e)
        for e in events
        if e.status == EventStatus.DELIVERED
        and visible_to(e.visibility, channel_id=channel_id, category=ChannelCategory.TRANSPORT)
    ]
    return visible, (events[-1].seq if events else after_seq)


def room_visible_events_between(room_id: str, after_seq: int, through_seq: int) -> list[dict[str, Any]]:
    """The events a room's sockets see live with ``after_seq < seq <= through_seq``, in order, as frames' ``event``.

    A room's sockets are the web chat's: the rule is its replay rule, so a
    recovered event is exactly one a resume would have replayed.
    """
    found: list[dict[str, Any]] = []
    covered = after_seq
    while covered < through_seq:
        events, last = room_socket_events_after(
            room_id, covered, channel_id=settings.ROOMKIT_WEBCHAT_CHANNEL_ID, limit=min(PAGE, through_seq - covered)
        )
        found += [e for e in events if e["seq"] <= through_seq]
        if last == covered:  # nothing more is stored
            break
        covered = last
    return found
