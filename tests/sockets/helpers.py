"""WebSocket test helpers around ``channels.testing.WebsocketCommunicator``.

Sockets talk to the project's real ASGI application (origin check included),
so a frame goes through the same router, consumer and channel layer as in
production.
"""

from __future__ import annotations

import time
from typing import Any

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings

from channels_app.webchat.tokens import chat_token_issue
from roomkit_project.asgi import application
from rooms.models import Participant

ORIGIN_HEADERS = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")]
EVENT_FIELDS = {"id", "room_id", "seq", "type", "direction", "source", "content", "created_at"}
SOURCE_FIELDS = {"channel_id", "participant_id", "display_name"}


class Sockets:
    """Opens chat sockets and closes whatever is still open at the end of a test."""

    def __init__(self) -> None:
        self.open: list[WebsocketCommunicator] = []

    async def connect(self, token: str, *, expect_ok: bool = True) -> tuple[WebsocketCommunicator, Any]:
        comm = WebsocketCommunicator(application, f"/ws/chat/?token={token}", headers=ORIGIN_HEADERS)
        connected, detail = await comm.connect(timeout=5)
        if connected:
            self.open.append(comm)
        if expect_ok and not connected:
            raise AssertionError(f"socket refused with close code {detail}")
        return comm, (connected, detail)

    async def refusal(self, token: str) -> dict:
        """Connect with a token that must be refused; the server's close message.

        The handshake must complete before the close, or a real client (a
        browser) sees a failed handshake (1006) instead of the close code.
        """
        comm = WebsocketCommunicator(application, f"/ws/chat/?token={token}", headers=ORIGIN_HEADERS)
        connected, detail = await comm.connect(timeout=5)
        if not connected:
            raise AssertionError(f"handshake refused (close {detail} before accept): clients would never see the code")
        message = await comm.receive_output(timeout=5)
        await comm.disconnect(code=message.get("code", 1000), timeout=2)
        return message

    async def close_all(self) -> None:
        for comm in self.open:
            try:
                await comm.disconnect(timeout=2)
            except Exception:  # already crashed: the test has reported it
                pass
        self.open.clear()


async def next_frame(comm: WebsocketCommunicator, predicate, *, timeout: float = 5.0) -> tuple[dict, list[dict]]:
    """The first frame matching ``predicate``, and the frames skipped before it."""
    skipped: list[dict] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no matching frame within {timeout}s; got {skipped}")
        frame = await comm.receive_json_from(timeout=remaining)
        if predicate(frame):
            return frame, skipped
        skipped.append(frame)


async def drain(comm: WebsocketCommunicator, *, quiet: float = 0.4) -> list[dict]:
    """Every frame that arrives until the socket has been quiet for ``quiet`` seconds."""
    frames: list[dict] = []
    while not await comm.receive_nothing(timeout=quiet):
        frames.append(await comm.receive_json_from())
    return frames


def is_event(seq: int | None = None):
    return lambda f: f.get("type") == "event" and (seq is None or f["event"]["seq"] == seq)


def is_type(kind: str):
    return lambda f: f.get("type") == kind


@database_sync_to_async
def join_room(room_id: str, display_name: str) -> tuple[str, str]:
    """Another web-chat participant in ``room_id``: (participant_id, token)."""
    p = Participant.objects.create(room_id=room_id, channel_id=settings.ROOMKIT_WEBCHAT_CHANNEL_ID, display_name=display_name)
    p.address = p.id
    p.save(update_fields=["address"])
    return p.id, chat_token_issue(room_id=room_id, participant_id=p.id)


def is_ephemeral(kind: str, **fields: Any):
    return lambda f: f.get("type") == "ephemeral" and f.get("kind") == kind and all(f.get(k) == v for k, v in fields.items())


def event_seqs(frames: list[dict]) -> list[int]:
    return [f["event"]["seq"] for f in frames if f.get("type") == "event"]
