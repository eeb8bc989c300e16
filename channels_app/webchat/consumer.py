"""The web-chat socket ``/ws/chat/?token=…``.

It authenticates the token (one participant, one room), joins the room's
frames (``rooms.realtime.broadcast.room_hub_join``) and relays: client frames go to
services (messages through the inbound path, read receipts, typing), room
frames go out to the client as the pre-encoded text they were published as.
No business rule lives here.

Loss-free resume. ``resume`` replays every event after ``after_seq`` from the
database while live event frames that arrive meanwhile are held; then the held
frames with a ``seq`` above what the replay covered go out in ``seq`` order and
the socket is live again. Live frames at or below that ``seq`` were in the
replay and are dropped, and the replay skips events this socket already got
live before the resume (a burst racing the client's resume frame), so the
client sees each event once, with no gap. (Why no gap: the room's ``seq`` is
taken under its row lock, so when the replay's last query sees ``seq`` N every
event up to N is committed, and every later event is published after this
socket joined the room.)

Order. The room hub hands this socket the room's event frames in ``seq``
order, none missing, from the moment it joined. Until the client's first
frame (its ``resume``, for the chat page) event frames are held, for at most
``RESUME_GRACE_SECONDS``, so that a resume's replay never comes after newer
live frames: the socket's events then arrive in ``seq`` order, always. After
each replay the socket sends ``{"type": "resumed", "after_seq", "through_seq"}``:
every visible event up to ``through_seq`` has been sent, and each live event
after the marker follows on without a gap, so a client may resume from the
last event it got after the marker (``channels_app/static/webchat/chat.js`` does).

Errors. A client frame that cannot be handled (malformed, nested too deep,
refused by a service, or failing unexpectedly) gets an ``error`` frame; it
never closes the socket. Frames and messages are rate limited
(``channels_app.socket_limits``): over a limit the client gets
``{"type": "error", "code": "rate_limited", "retry_after": seconds, …}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from channels_app.socket_limits import chat_frame_check, chat_message_check
from channels_app.webchat.services import webchat_events_after, webchat_message_send, webchat_participant
from channels_app.webchat.tokens import ChatClaims, chat_token_verify
from rooms.errors import RoomKitError
from rooms.realtime import broadcast as realtime
from rooms.realtime.presence import presence_join, presence_leave
from rooms.services import participant_mark_read

logger = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4401
REPLAY_PAGE = 500
# Seqs of live event frames remembered until the first resume, so that its
# replay skips them; a client resumes right after connecting, if at all.
MAX_REMEMBERED_LIVE = 1000
# How long event frames wait for the client's first frame (its resume) after
# the socket opens; a client that never sends one gets them live after this.
RESUME_GRACE_SECONDS = 1.0
MAX_SEQ = 2**63 - 1


class ChatConsumer(AsyncJsonWebsocketConsumer):
    claims: ChatClaims | None = None

    async def __call__(self, scope, receive, send) -> None:
        self._left = False
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Also when the server cancels the connection without a disconnect.
            await self._leave()

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections (a thread hop) before
        # every handler. Our handlers reach the database only through
        # database_sync_to_async, which does that itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    # Connection ----------------------------------------------------------------
    async def connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode())
        claims = chat_token_verify((query.get("token") or [""])[0])
        participant = await database_sync_to_async(webchat_participant)(claims) if claims else None
        if participant is None:
            # Accept first: a close before the handshake completes becomes an
            # HTTP 403 and the client sees 1006, never the 4401 it acts on.
            await self.accept()
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        self.claims = claims
        self.display_name = participant.display_name
        self._floor = 0  # live event frames at or below this seq were sent by a replay
        # Event frames are held (``_pending``) while anything holds them: the
        # socket opening and its grace (one hold from here), a replay, a message
        # being stored. The last release sends them, in seq order.
        self._pending: list[tuple[int, dict[str, Any]]] | None = []
        self._holds = 1
        self._grace = None
        self._live_sent: set[int] | None = set()  # until the first resume
        self._accepted = False
        self._typing = False
        self._present = False
        self._hub = None
        # Join the room before accepting, so that a client's first frame (its
        # resume) finds the socket ready: what arrives from now on is held.
        self._hub = await realtime.room_hub_join(claims.room_id, self)
        try:
            online = await sync_to_async(presence_join, thread_sensitive=False)(
                room_id=claims.room_id,
                participant_id=claims.participant_id,
                socket_id=self.channel_name,
                display_name=self.display_name,
            )
            self._present = True
        except Exception:  # presence is a nicety; the chat works without it
            logger.exception("presence registration failed")
            online = []
        await self.accept()
        self._accepted = True
        # Event frames stay held until the client's first frame or the grace.
        self._grace = asyncio.get_running_loop().call_later(RESUME_GRACE_SECONDS, self._grace_over)
        for other in online:
            await self._send_frame({"type": "ephemeral", "kind": "presence", "status": "online", **other})

    async def disconnect(self, code: int) -> None:
        await self._leave()

    def _grace_over(self) -> None:
        self._grace = None
        if not self._left:
            asyncio.ensure_future(self._release())

    def _end_grace(self) -> bool:
        """The client spoke first: stop the grace timer. True if the caller now owns the opening hold."""
        if self._grace is None:
            return False
        self._grace.cancel()
        self._grace = None
        return True

    async def _leave(self) -> None:
        if self._left or self.claims is None:
            return
        self._left = True
        if getattr(self, "_grace", None) is not None:
            self._grace.cancel()
            self._grace = None
        if self._hub is not None:
            await realtime.room_hub_leave(self._hub, self)
        if self._typing:
            realtime.publish_typing(self.claims.room_id, self.claims.participant_id, typing=False, display_name=self.display_name)
        if self._present:
            try:
                await sync_to_async(presence_leave, thread_sensitive=False)(
                    room_id=self.claims.room_id,
                    participant_id=self.claims.participant_id,
                    socket_id=self.channel_name,
                    display_name=self.display_name,
                )
            except Exception:
                logger.exception("presence removal failed")

    # Room frames -------------------------------------------------------------------
    async def relay(self, message: dict[str, Any], out: dict[str, Any]) -> None:
        """A frame of this socket's room (called by the room hub): send, hold or drop it."""
        if message.get("exclude") == self.channel_name:
            return
        seq = message.get("seq")
        if seq is None and not self._accepted:
            return  # an ephemeral frame from before this socket was open
        if seq is not None:
            if self._pending is not None:
                self._pending.append((seq, out))
                return
            if seq <= self._floor:
                return
            if self._live_sent is not None:
                self._remember_live(seq)
        await self._send_out(out)

    async def _send_out(self, out: dict[str, Any]) -> None:
        try:
            await self.base_send(out)
        except Exception:
            # The client went away; its disconnect (and our leaving the room) is on its way.
            logger.debug("a frame for a closed chat socket was dropped", exc_info=True)

    def _remember_live(self, seq: int) -> None:
        self._live_sent.add(seq)
        if len(self._live_sent) > MAX_REMEMBERED_LIVE:
            self._live_sent = None

    def _hold(self) -> None:
        self._holds += 1
        if self._pending is None:
            self._pending = []

    async def _release(self) -> None:
        """Drop one hold; the last one sends the frames held meanwhile, above the floor and in seq order."""
        self._holds -= 1
        while self._holds == 0 and self._pending:
            batch, self._pending = sorted(self._pending, key=lambda held: held[0]), []
            for i, (seq, out) in enumerate(batch):
                if self._holds:  # held again while we were sending: the next release sends the rest
                    self._pending = batch[i:] + self._pending
                    return
                if seq > self._floor:
                    if self._live_sent is not None:
                        self._remember_live(seq)
                    await self._send_out(out)
        if self._holds == 0:
            self._pending = None

    # Client frames -----------------------------------------------------------------
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        if self.claims is None:  # refused at connect; frames that raced the close
            return
        first = self._end_grace()
        try:
            wait = chat_frame_check(self.channel_name)
            if wait is not None:
                await self._error("rate_limited", f"too many frames; wait {wait:g} s", retry_after=wait)
            else:
                await self._client_frame(text_data)
        except Exception:
            # One bad frame costs the client an error frame, never the socket.
            logger.exception("a chat frame of participant %s failed", self.claims.participant_id)
            await self._error("internal_error", "the server could not handle this frame")
        finally:
            if first:
                # The opening hold ends with the client's first frame (after
                # its replay, when it is a resume).
                await self._release()

    async def _client_frame(self, text_data: str | None) -> None:
        if text_data is None:
            await self._error("bad_frame", "frames are JSON text")
            return
        try:
            content = json.loads(text_data)
        except RecursionError:
            await self._error("bad_frame", "the frame is nested too deeply")
            return
        except ValueError:
            await self._error("bad_frame", "frames are JSON objects")
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not isinstance(content, dict):
            await self._error("bad_frame", "frames are JSON objects")
            return
        kind = content.get("type")
        if kind == "message":
            await self._message(content)
        elif kind == "resume":
            await self._resume(content.get("after_seq", 0))
        elif kind == "typing":
            await self._typing_frame(content.get("state"))
        elif kind == "read":
            await self._read(content.get("seq"))
        else:
            named = f" {kind[:40]!r}" if isinstance(kind, str) else ""
            await self._error("unknown_type", f"unknown frame type{named}")

    async def _message(self, content: dict[str, Any]) -> None:
        client_msg_id = content.get("client_msg_id")
        extra = {"client_msg_id": client_msg_id} if isinstance(client_msg_id, str) else {}
        wait = await chat_message_check(self.channel_name, self.claims.participant_id)
        if wait is not None:
            await self._error("rate_limited", f"too many messages; wait {wait:g} s", retry_after=wait, **extra)
            return
        # The sender gets the ack before the message's own event frame: hold
        # event frames while the message is stored.
        self._hold()
        try:
            # Not thread-sensitive: sockets' messages would otherwise take turns
            # on the one thread consumers share; on threads of their own,
            # messages sent at once share a commit (rooms.inbound.group_commit).
            result = await database_sync_to_async(webchat_message_send, thread_sensitive=False)(
                self.claims, client_msg_id=client_msg_id, text=content.get("text"), media=content.get("media")
            )
            if self._typing:
                # Sending ends typing, for everyone else's indicator too.
                await self._typing_frame("stop")
            await self._send_frame({"type": "ack", "client_msg_id": client_msg_id, "seq": result.seq, "status": result.status})
        except RoomKitError as exc:
            await self._error(exc.code, exc.message, **extra)
        except Exception:
            logger.exception("storing a chat message of participant %s failed", self.claims.participant_id)
            await self._error("internal_error", "the message could not be stored", **extra)
        finally:
            await self._release()

    async def _typing_frame(self, state: Any) -> None:
        if state not in ("start", "stop"):
            await self._error("invalid_input", "typing state must be 'start' or 'stop'")
            return
        self._typing = state == "start"
        realtime.publish_typing(
            self.claims.room_id,
            self.claims.participant_id,
            typing=self._typing,
            display_name=self.display_name,
            exclude_socket=self.channel_name,
        )

    async def _read(self, seq: Any) -> None:
        try:
            await database_sync_to_async(participant_mark_read)(participant_id=self.claims.participant_id, seq=seq)
        except RoomKitError as exc:
            await self._error(exc.code, exc.message)

    async def _resume(self, after_seq: Any) -> None:
        if type(after_seq) is not int or not 0 <= after_seq <= MAX_SEQ:
            await self._error("invalid_input", "after_seq must be a non-negative integer")
            return
        # Hold live event frames from now on, while the replay reads the database.
        # (Client frames are handled one at a time: no other resume runs now.)
        self._hold()
        already_sent, self._live_sent = self._live_sent or set(), None
        covered = after_seq
        complete = False
        try:
            while True:
                events, last_seen = await database_sync_to_async(webchat_events_after)(
                    self.claims.room_id, covered, limit=REPLAY_PAGE
                )
                for event in events:
                    if event["seq"] not in already_sent:
                        await self._send_frame({"type": "event", "event": event})
                if last_seen == covered:
                    break
                covered = last_seen
            complete = True
        except Exception:
            # The client keeps its resume point (no "resumed" frame) and may ask again.
            logger.exception("replaying room %s after seq %s failed", self.claims.room_id, covered)
            await self._error("resume_failed", "the history could not be read; resume again")
        finally:
            # Even after a failed page, go live from what was replayed.
            self._floor = covered
            if complete:
                await self._send_frame({"type": "resumed", "after_seq": after_seq, "through_seq": covered})
            await self._release()

    async def _send_frame(self, frame: dict[str, Any]) -> None:
        await self.base_send({"type": "websocket.send", "text": realtime.encode_frame(frame)})

    async def _error(self, code: str, message: str, **extra: Any) -> None:
        try:
            await self._send_frame({"type": "error", "code": code, "message": message, **extra})
        except Exception:  # the socket is gone: nobody to tell
            logger.debug("could not send an error frame", exc_info=True)
