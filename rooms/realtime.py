"""Live fan-out over the channel layer: room events and ephemeral events.

Each room has one group; WebSocket consumers join it and relay what arrives.
Ephemeral events (typing, presence, read receipts, tool calls) travel the same
way but are never stored as messages.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer

logger = logging.getLogger(__name__)


def room_group(room_id: str) -> str:
    return f"room.{room_id}"


def staff_group(room_id: str) -> str:
    return f"staff.room.{room_id}"


# The event loop that runs this process's consumers (Daphne's, or a test's),
# recorded by the ASGI application. Publishing from sync code hands the message
# to that loop without waiting: one queue and one pump task keep the order.
_server_loop: asyncio.AbstractEventLoop | None = None
_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Queue] = weakref.WeakKeyDictionary()


def bind_server_loop(loop: asyncio.AbstractEventLoop) -> None:
    global _server_loop
    _server_loop = loop


async def _pump(queue: asyncio.Queue) -> None:
    layer = get_channel_layer()
    while True:
        group, message = await queue.get()
        try:
            await layer.group_send(group, message)
        except Exception:
            logger.exception("group_send to %s failed", group)


def _enqueue_on_loop(group: str, message: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    queue = _queues.get(loop)
    if queue is None:
        queue = _queues[loop] = asyncio.Queue()
        loop.create_task(_pump(queue))
    queue.put_nowait((group, message))


def _send(group: str, message: dict[str, Any]) -> None:
    loop = _server_loop
    if loop is not None and loop.is_running() and not loop.is_closed():
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            _enqueue_on_loop(group, message)
        else:
            loop.call_soon_threadsafe(_enqueue_on_loop, group, message)
        return
    layer = get_channel_layer()
    if layer is None or isinstance(layer, InMemoryChannelLayer):
        # An in-memory layer only reaches sockets served by this process's
        # loop; with no such loop running, nobody could be listening.
        return
    # A worker or a command: hand the message to this process's publisher
    # thread, which keeps one loop (and one Redis pool) for all sends.
    background = _background_loop()
    background.call_soon_threadsafe(_enqueue_on_loop, group, message)


_background: asyncio.AbstractEventLoop | None = None
_background_lock = threading.Lock()


def _background_loop() -> asyncio.AbstractEventLoop:
    global _background
    with _background_lock:
        if _background is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="roomkit-publisher", daemon=True).start()
            _background = loop
    return _background


def flush_background(timeout: float = 5.0) -> None:
    """Wait until the publisher thread has sent what it was given (tests, shutdown)."""
    if _background is None:
        return
    queue = _queues.get(_background)

    async def drained() -> None:
        while queue is not None and not queue.empty():
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.01)

    asyncio.run_coroutine_threadsafe(drained(), _background).result(timeout)


def publish_event(room_id: str, event: dict[str, Any], *, public: bool) -> None:
    """Send a stored event to the room's sockets (``public``) and to operators."""
    message = {"type": "room.event", "event": event}
    if public:
        _send(room_group(room_id), message)
    _send(staff_group(room_id), message)


def publish_ephemeral(room_id: str, kind: str, **data: Any) -> None:
    _send(room_group(room_id), {"type": "room.ephemeral", "kind": kind, "ts": time.time(), **data})


def publish_typing(room_id: str, participant_id: str, *, typing: bool = True, display_name: str = "") -> None:
    publish_ephemeral(
        room_id,
        "typing_start" if typing else "typing_stop",
        participant_id=participant_id,
        display_name=display_name,
    )


def publish_presence(room_id: str, participant_id: str, status: str) -> None:
    publish_ephemeral(room_id, "presence", participant_id=participant_id, status=status)


def publish_read_receipt(room_id: str, participant_id: str, seq: int) -> None:
    publish_ephemeral(room_id, "read_receipt", participant_id=participant_id, seq=seq)
