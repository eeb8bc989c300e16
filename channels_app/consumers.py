"""The web-chat socket ``/ws/chat/?token=…``.

It authenticates the token (one participant, one room), joins the room's
group and relays: client messages go through the inbound path, group events
go out to the client. No business rule lives here.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from rooms.enums import RoomStatus
from rooms.errors import RoomKitError
from rooms.inbound import InboundMessage, process_inbound
from rooms.models import Participant
from rooms.realtime import room_group
from rooms.selectors import room_events
from rooms.serializers import event_to_dict
from rooms.tokens import ChatClaims, chat_token_verify

logger = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4401
_RELAY_TYPES = frozenset({"room.event", "room.ephemeral"})
REPLAY_PAGE = 500


@database_sync_to_async
def _participant_in_room(claims: ChatClaims) -> Participant | None:
    p = Participant.objects.filter(pk=claims.participant_id, room_id=claims.room_id).select_related("room").first()
    if p is None or p.room.status not in (RoomStatus.ACTIVE, RoomStatus.PAUSED):
        return None
    return p


@database_sync_to_async
def _send_message(claims: ChatClaims, text: str, client_msg_id: str | None):
    return process_inbound(
        InboundMessage(
            channel_id=settings.ROOMKIT_WEBCHAT_CHANNEL_ID,
            room_id=claims.room_id,
            participant_id=claims.participant_id,
            sender=claims.participant_id,
            text=text,
            # Keys are unique per channel and every visitor shares the web-chat
            # channel: scope each visitor's ids to them.
            idempotency_key=f"{claims.participant_id}:{client_msg_id}" if client_msg_id else None,
        )
    )


@database_sync_to_async
def _events_after(room_id: str, after_seq: int) -> list[dict[str, Any]]:
    return [
        event_to_dict(e)
        for e in room_events(room_id, after_seq=after_seq, limit=REPLAY_PAGE)
        if e.status == "delivered" and e.visibility not in ("internal", "none")
    ]


@database_sync_to_async
def _mark_read(claims: ChatClaims, seq: int) -> None:
    Participant.objects.filter(pk=claims.participant_id, last_read_seq__lt=seq).update(last_read_seq=seq)


class ChatConsumer(AsyncJsonWebsocketConsumer):
    claims: ChatClaims | None = None

    async def connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode())
        claims = chat_token_verify((query.get("token") or [""])[0])
        participant = await _participant_in_room(claims) if claims else None
        if participant is None:
            # Accept first: a close before the handshake completes becomes an
            # HTTP 403 and the client sees 1006, never the 4401 it acts on.
            await self.accept()
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        self.claims = claims
        self.display_name = participant.display_name
        self.group = room_group(claims.room_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.claims is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if self.claims is None:  # refused at connect; frames that raced the close
            return
        if not isinstance(content, dict):
            await self._error("bad_frame", "frames are JSON objects")
            return
        kind = content.get("type")
        if kind == "message":
            await self._message(content)
        elif kind == "resume":
            await self._resume(content.get("after_seq", 0))
        elif kind == "typing":
            state = "typing_start" if content.get("state") == "start" else "typing_stop"
            await self.channel_layer.group_send(
                self.group,
                {
                    "type": "room.ephemeral",
                    "kind": state,
                    "participant_id": self.claims.participant_id,
                    "display_name": self.display_name,
                },
            )
        elif kind == "read":
            seq = content.get("seq")
            if isinstance(seq, int) and seq > 0:
                await _mark_read(self.claims, seq)
                await self.channel_layer.group_send(
                    self.group,
                    {
                        "type": "room.ephemeral",
                        "kind": "read_receipt",
                        "participant_id": self.claims.participant_id,
                        "seq": seq,
                    },
                )
        else:
            await self._error("unknown_type", f"unknown frame type {kind!r}")

    async def _message(self, content: dict[str, Any]) -> None:
        text, client_msg_id = content.get("text"), content.get("client_msg_id")
        if not isinstance(text, str) or not text.strip():
            await self._error("invalid_input", "text is required")
            return
        if client_msg_id is not None and not isinstance(client_msg_id, str):
            await self._error("invalid_input", "client_msg_id must be a string")
            return
        try:
            result = await _send_message(self.claims, text, client_msg_id)
        except RoomKitError as exc:
            await self._error(exc.code, exc.message)
            return
        await self.send_json({"type": "ack", "client_msg_id": client_msg_id, "seq": result.seq, "status": result.status})

    async def _resume(self, after_seq: Any) -> None:
        if not isinstance(after_seq, int) or after_seq < 0:
            await self._error("invalid_input", "after_seq must be a non-negative integer")
            return
        while True:
            events = await _events_after(self.claims.room_id, after_seq)
            for ev in events:
                await self.send_json({"type": "event", "event": ev})
            if len(events) < REPLAY_PAGE:
                break
            after_seq = events[-1]["seq"]

    async def _error(self, code: str, message: str) -> None:
        await self.send_json({"type": "error", "code": code, "message": message})

    # Group message handlers ------------------------------------------------
    async def dispatch(self, message: dict[str, Any]) -> None:
        # Relaying a group message touches no database, so skip the
        # close_old_connections thread hop Channels makes before every handler:
        # it was most of the cost of each delivered frame. Frames from the
        # client reach the database only through database_sync_to_async,
        # which closes stale connections itself.
        if message["type"] in _RELAY_TYPES:
            await getattr(self, get_handler_name(message))(message)
        else:
            await super().dispatch(message)

    async def room_event(self, message: dict[str, Any]) -> None:
        await self.send_json({"type": "event", "event": message["event"]})

    async def room_ephemeral(self, message: dict[str, Any]) -> None:
        payload = {k: v for k, v in message.items() if k != "type"}
        await self.send_json({"type": "ephemeral", **payload})
