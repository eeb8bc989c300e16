"""The operators' live socket: ``/ws/staff/rooms/`` (the room list) and ``/ws/staff/rooms/<room_id>/`` (a room page).

It authenticates the Django session (``staff_rooms_app`` wraps the consumer in
Channels' ``AuthMiddlewareStack``), admits active staff who may read rooms
(``rooms.view_room``) and relays: no business rule lives here.

- A room page's socket joins ``staff_group(room_id)``, where
  ``rooms.realtime.broadcast.publish_event`` sends every stored event of the room
  (internal notes included), and gets each as ``{"type": "event", "event": …}``.
- The list's socket joins ``staff.rooms`` (``room_activity`` for every stored
  event, ``room_created``, ``room_changed`` for the inbox's state) and, for the
  rooms the page shows, their staff groups: the page sends ``{"type": "watch",
  "room_ids": [...]}``. Each event is relayed as it was published; the page
  reads ``event.room_id``. A list socket makes its operator online in the
  inbox while it is open and pings (``{"type": "ping"}``) at least every 150 s.

A refused socket is accepted and closed with 4403, so the page can tell
"not allowed" from a network failure and stop reconnecting. A frame the
socket cannot handle (malformed, nested too deep, a failing read) gets an
``error`` frame; it never closes the socket.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from rooms.console import inbox
from rooms.models import Room
from rooms.realtime.broadcast import STAFF_ROOMS_GROUP, encode_frame, staff_group

logger = logging.getLogger(__name__)

CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
MAX_WATCHED_ROOMS = 200


def _allowed(user: Any) -> bool:
    return bool(
        user is not None and user.is_authenticated and user.is_active and user.is_staff and user.has_perm("rooms.view_room")
    )


class StaffRoomsConsumer(AsyncJsonWebsocketConsumer):
    """Relays room events to operators' pages; joins groups, checks permission, nothing else."""

    groups_joined: set[str]
    room_id: str | None = None
    allowed = False
    # Whether this socket counts toward its operator's presence (a list socket).
    counted = False

    async def connect(self) -> None:
        self.groups_joined = set()
        await self.accept()
        user = self.scope.get("user")
        if not await database_sync_to_async(_allowed)(user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        room_id = self.scope.get("url_route", {}).get("kwargs", {}).get("room_id")
        if room_id:
            if not await database_sync_to_async(Room.objects.filter(pk=room_id).exists)():
                await self.close(code=CLOSE_NOT_FOUND)
                return
            await self._join(staff_group(room_id))
            self.room_id = room_id
        else:
            self.room_id = None
            await self._join(STAFF_ROOMS_GROUP)
            # An operator with a list open is online (rooms.console.inbox: presence, round robin).
            await database_sync_to_async(inbox.presence_joined)(user)
            self.counted = True
        self.allowed = True
        await self.send(text_data=encode_frame({"type": "ready", "room_id": self.room_id}))

    async def _join(self, group: str) -> None:
        if group not in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.add(group)

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups_joined", set()):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined = set()
        if self.counted:
            self.counted = False
            await database_sync_to_async(inbox.presence_left)(self.scope["user"])

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        if not self.allowed:  # refused at connect; frames that raced the close
            return
        try:
            try:
                content = json.loads(text_data) if text_data is not None else None
            except (ValueError, RecursionError):
                await self._error("bad_frame", "frames are JSON objects")
                return
            await self.receive_json(content)
        except Exception:
            logger.exception("a staff socket frame failed")
            await self._error("internal_error", "the server could not handle this frame")

    async def _error(self, code: str, message: str) -> None:
        try:
            await self.send(text_data=encode_frame({"type": "error", "code": code, "message": message}))
        except Exception:  # the socket is gone
            logger.debug("could not send an error frame", exc_info=True)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if self.counted and isinstance(content, dict) and content.get("type") == "ping":
            await database_sync_to_async(inbox.presence_seen)(self.scope["user"])
            return
        if self.room_id is not None or not isinstance(content, dict) or content.get("type") != "watch":
            return
        room_ids = content.get("room_ids")
        if not isinstance(room_ids, list):
            return
        wanted = [r for r in room_ids if isinstance(r, str) and r][:MAX_WATCHED_ROOMS]
        existing = await database_sync_to_async(lambda: list(Room.objects.filter(pk__in=wanted).values_list("pk", flat=True)))()
        for room_id in existing:
            if len(self.groups_joined) > MAX_WATCHED_ROOMS:
                break
            await self._join(staff_group(room_id))

    async def room_frame(self, message: dict[str, Any]) -> None:
        """A frame published by ``rooms.realtime.broadcast``: already encoded, sent as is."""
        text = message.get("text")
        if isinstance(text, str):
            await self.send(text_data=text)


# What the lead routes in roomkit_project/asgi.py: the session's user is in scope["user"].
staff_rooms_app = AuthMiddlewareStack(StaffRoomsConsumer.as_asgi())
