"""What a room hub reads from the database to keep its sockets' event stream whole.

``rooms.realtime.broadcast.RoomHub`` hands a room's event frames to its sockets in
``seq`` order. When a frame is late or was lost by the channel layer, the
hub reads the missing events here: the database is the truth, and every
event below a ``seq`` that has been published is already committed (a seq is
taken under the room's row lock and published after its commit).
"""

from __future__ import annotations

from typing import Any

from rooms.models import Room

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


def room_visible_events_between(room_id: str, after_seq: int, through_seq: int) -> list[dict[str, Any]]:
    """The events a room's sockets see live with ``after_seq < seq <= through_seq``, in order, as frames' ``event``.

    The rule is the web chat's replay rule (``channels_app.webchat.services.webchat_events_after``),
    so a recovered event is exactly one a resume would have replayed.
    """
    from channels_app.webchat.services import (
        webchat_events_after,  # the web chat imports the inbound path, which imports realtime
    )

    found: list[dict[str, Any]] = []
    covered = after_seq
    while covered < through_seq:
        events, last = webchat_events_after(room_id, covered, limit=min(PAGE, through_seq - covered))
        found += [e for e in events if e["seq"] <= through_seq]
        if last == covered:  # nothing more is stored
            break
        covered = last
    return found
