"""Live fan-out over the channel layer: room events, AI reply streams and ephemeral events.

Publishing. Every frame a socket will see is encoded to JSON text once, here,
when it is published, and travels the room's channel-layer group as
``{"type": "room.frame", "text": …}`` (plus ``seq`` for stored events, ``kind``
for ephemeral ones and ``exclude`` for the one socket that must not get it
back). Sync code (views, the inbound path's ``on_commit``, workers) hands each
message to the loop that serves this process's sockets without waiting: one
queue and one pump task per loop keep the order.

Receiving. Each process joins a room's group once (``RoomHub``, one per room
and event loop), not once per socket: a published frame is one channel-layer
message per process, and the hub hands the same text to each local socket and
Python subscriber (``subscribe_room``). Ephemeral events (typing, presence, read
receipts, tool calls) travel the same way and are never stored as messages.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from channels.layers import InMemoryChannelLayer, get_channel_layer

logger = logging.getLogger(__name__)

FRAME = "room.frame"


def room_group(room_id: str) -> str:
    return f"room.{room_id}"


# The operators' room-list sockets (room-level changes).
STAFF_ROOMS_GROUP = "staff.rooms"


def staff_group(room_id: str) -> str:
    return f"staff.room.{room_id}"


def encode_frame(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


# --- Publishing -----------------------------------------------------------------

# The event loop that runs this process's consumers (Daphne's, or a test's),
# recorded by the ASGI application.
_server_loop: asyncio.AbstractEventLoop | None = None
_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Queue] = weakref.WeakKeyDictionary()


def bind_server_loop(loop: asyncio.AbstractEventLoop) -> None:
    global _server_loop
    _server_loop = loop


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _live(loop: asyncio.AbstractEventLoop | None) -> bool:
    return loop is not None and loop.is_running() and not loop.is_closed()


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


def _target_loop() -> asyncio.AbstractEventLoop | None:
    """The loop whose pump should send: where this process's sockets and subscribers listen."""
    running = _running_loop()
    if not _live(_server_loop) and running is not None:
        # Async code publishing before any socket bound a loop (a test, a
        # script): its own loop is where listeners, if any, are.
        bind_server_loop(running)
    if _live(_server_loop):
        return _server_loop
    layer = get_channel_layer()
    if layer is None:
        return None
    if isinstance(layer, InMemoryChannelLayer):
        # An in-memory layer only reaches listeners on this process's loops;
        # with no server loop, only subscriptions made from sync code (which
        # live on the publisher thread's loop) could be listening.
        return _background if _background is not None and _hubs.get(_background) else None
    # A worker or a command: this process's publisher thread keeps one loop
    # (and one Redis pool) for all sends.
    return _background_loop()


def _enqueue_all_on_loop(items: list[tuple[str, dict[str, Any]]]) -> None:
    for group, message in items:
        _enqueue_on_loop(group, message)


_held = threading.local()


def _send(group: str, message: dict[str, Any]) -> None:
    held = getattr(_held, "items", None)
    if held is not None:
        held.append((group, message))
        return
    loop = _target_loop()
    if loop is None:
        return
    if _running_loop() is loop:
        _enqueue_on_loop(group, message)
    else:
        loop.call_soon_threadsafe(_enqueue_on_loop, group, message)


@contextmanager
def sent_together() -> Iterator[None]:
    """Hand everything published inside the block to the loop at once, in order, at its end.

    Waking the socket loop from another thread costs a system call and a
    thread switch per hand-over; a group commit publishes a whole batch of
    events at once and pays it once.
    """
    if getattr(_held, "items", None) is not None:
        yield
        return
    _held.items = items = []
    try:
        yield
    finally:
        _held.items = None
        loop = _target_loop() if items else None
        if loop is not None:
            if _running_loop() is loop:
                _enqueue_all_on_loop(items)
            else:
                loop.call_soon_threadsafe(_enqueue_all_on_loop, items)


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


def _publish(room_id: str, frame: dict[str, Any], *, exclude: str | None = None, **extra: Any) -> None:
    message: dict[str, Any] = {"type": FRAME, "text": encode_frame(frame), **extra}
    if exclude:
        message["exclude"] = exclude
    _send(room_group(room_id), message)


def publish_event(room_id: str, event: dict[str, Any], *, public: bool) -> None:
    """Send a stored event to the room's sockets (``public``) and to operators."""
    message = {"type": FRAME, "text": encode_frame({"type": "event", "event": event}), "seq": event["seq"]}
    if public:
        _send(room_group(room_id), message)
    _send(staff_group(room_id), message)


def announce_room_created(room_id: str) -> None:
    """Tell operators' room lists that a room exists (they re-read their rows)."""
    _send(STAFF_ROOMS_GROUP, {"type": FRAME, "text": encode_frame({"type": "room_created", "room_id": room_id})})


def publish_ephemeral(room_id: str, kind: str, *, exclude_socket: str | None = None, **data: Any) -> None:
    """An ephemeral event to everyone in the room (but the socket ``exclude_socket``); never stored."""
    _publish(room_id, {"type": "ephemeral", "kind": kind, **data, "ts": time.time()}, exclude=exclude_socket, kind=kind)


def publish_typing(
    room_id: str,
    participant_id: str,
    *,
    typing: bool = True,
    display_name: str = "",
    exclude_socket: str | None = None,
) -> None:
    publish_ephemeral(
        room_id,
        "typing_start" if typing else "typing_stop",
        participant_id=participant_id,
        display_name=display_name,
        exclude_socket=exclude_socket,
    )


def publish_presence(
    room_id: str, participant_id: str, status: str, *, display_name: str = "", exclude_socket: str | None = None
) -> None:
    publish_ephemeral(
        room_id,
        "presence",
        participant_id=participant_id,
        status=status,
        display_name=display_name,
        exclude_socket=exclude_socket,
    )


def publish_read_receipt(room_id: str, participant_id: str, seq: int) -> None:
    publish_ephemeral(room_id, "read_receipt", participant_id=participant_id, seq=seq)


def publish_tool_call_start(room_id: str, agent_id: str, tool_calls: list[dict[str, Any]]) -> None:
    """An agent started calling tools (``[{"name", …}]``): shown as status, never as message text."""
    publish_ephemeral(room_id, "tool_call_start", agent_id=agent_id, tool_calls=tool_calls)


def publish_tool_call_end(room_id: str, agent_id: str, duration_ms: int | float) -> None:
    publish_ephemeral(room_id, "tool_call_end", agent_id=agent_id, duration_ms=duration_ms)


def publish_stream_start(room_id: str, stream_id: str, agent_id: str) -> None:
    """An AI reply starts streaming; its chunks follow in order on the same path."""
    _publish(room_id, {"type": "stream_start", "stream_id": stream_id, "agent_id": agent_id})


def publish_stream_chunk(room_id: str, stream_id: str, delta: str) -> None:
    _publish(room_id, {"type": "stream_chunk", "stream_id": stream_id, "delta": delta})


def publish_stream_end(room_id: str, stream_id: str, event_id: str | None, *, abandoned: bool = False, reason: str = "") -> None:
    """The stream is over; ``event_id`` is the stored event that holds the whole reply.

    ``abandoned``: its text will not be the reply (the provider failed
    partway; a retry streams afresh under another id). Clients drop what they
    showed of it; ``reason`` says why.
    """
    frame: dict[str, Any] = {"type": "stream_end", "stream_id": stream_id, "event_id": event_id}
    if abandoned:
        frame.update(abandoned=True, reason=reason)
    _publish(room_id, frame)


# --- Receiving: one group membership per room and loop ------------------------------


class FrameSink(Protocol):
    """Something on this process that wants a room's frames (a socket, a subscriber)."""

    async def relay(self, message: dict[str, Any], out: dict[str, Any]) -> None:
        """``message`` is the group message; ``out`` the ready ``websocket.send`` for it."""


def _legacy_frame(message: dict[str, Any]) -> dict[str, Any] | None:
    """A group message sent in the older shapes (``room.event`` / ``room.ephemeral``), as a frame message."""
    kind = message.get("type")
    if kind == "room.event":
        event = message["event"]
        return {"type": FRAME, "text": encode_frame({"type": "event", "event": event}), "seq": event.get("seq")}
    if kind == "room.ephemeral":
        payload = {k: v for k, v in message.items() if k not in ("type", "exclude")}
        frame = {"type": FRAME, "text": encode_frame({"type": "ephemeral", **payload}), "kind": payload.get("kind")}
        if message.get("exclude"):
            frame["exclude"] = message["exclude"]
        return frame
    return None


class RoomHub:
    """This process's membership in one room's group, on one event loop.

    One channel-layer channel for the room instead of one per socket: a frame
    costs one channel-layer message per process, and each local socket gets
    the same pre-encoded text, without a queue, a task wake-up or a JSON
    encoding of its own.
    """

    def __init__(self, room_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.room_id = room_id
        self.loop = loop
        self.group = room_group(room_id)
        self.sinks: dict[FrameSink, None] = {}  # insertion-ordered set
        self.channel: str | None = None
        self.ready: asyncio.Future = loop.create_future()
        self.closed = False
        self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        layer = get_channel_layer()
        refresher = None
        try:
            # The layer's usual process-local name: channels-redis receives all
            # of a process's local channels through one key, by prefix.
            self.channel = await layer.new_channel()
            await layer.group_add(self.group, self.channel)
            # Group memberships expire (a day by default): renew while we live.
            refresher = asyncio.ensure_future(self._renew(layer))
            if not self.ready.done():
                self.ready.set_result(None)
            while True:
                message = await layer.receive(self.channel)
                await self.deliver(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("room hub for %s stopped", self.room_id)
            if not self.ready.done():
                self.ready.set_exception(exc)
        finally:
            if refresher is not None:
                refresher.cancel()
            if not self.ready.done():
                self.ready.cancel()

    async def _renew(self, layer: Any) -> None:
        interval = max(1.0, min(3600.0, getattr(layer, "group_expiry", 86400) / 2))
        while True:
            await asyncio.sleep(interval)
            await layer.group_add(self.group, self.channel)

    async def deliver(self, message: dict[str, Any]) -> None:
        if message.get("type") != FRAME:
            message = _legacy_frame(message)
            if message is None:
                return
        out = {"type": "websocket.send", "text": message["text"]}
        for sink in tuple(self.sinks):
            try:
                await sink.relay(message, out)
            except Exception:
                logger.exception("relaying a frame of room %s failed", self.room_id)

    async def close(self) -> None:
        self.closed = True
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        if self.channel is not None:
            try:
                await get_channel_layer().group_discard(self.group, self.channel)
            except Exception:
                logger.exception("leaving group %s failed", self.group)


# loop -> room_id -> hub. Touched only from the loop's own thread.
_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, RoomHub]] = weakref.WeakKeyDictionary()


def _hub_for(room_id: str, sink: FrameSink) -> RoomHub:
    loop = asyncio.get_running_loop()
    hubs = _hubs.setdefault(loop, {})
    hub = hubs.get(room_id)
    if hub is None or hub.closed:
        hub = hubs[room_id] = RoomHub(room_id, loop)
    hub.sinks[sink] = None
    return hub


async def room_hub_join(room_id: str, sink: FrameSink) -> RoomHub:
    """Start relaying ``room_id``'s frames to ``sink``; returns once this process is in the group."""
    hub = _hub_for(room_id, sink)
    await asyncio.shield(hub.ready)
    return hub


async def room_hub_leave(hub: RoomHub, sink: FrameSink) -> None:
    hub.sinks.pop(sink, None)
    if hub.sinks or hub.closed:
        return
    hubs = _hubs.get(hub.loop, {})
    if hubs.get(hub.room_id) is hub:
        del hubs[hub.room_id]
    await hub.close()


# --- Python subscribers ---------------------------------------------------------------


@dataclass(frozen=True)
class EphemeralEvent:
    """An ephemeral event as Python subscribers see it: ``kind`` and the frame's other fields."""

    room_id: str
    kind: str
    data: dict[str, Any]

    @property
    def participant_id(self) -> str | None:
        return self.data.get("participant_id")


EphemeralCallback = Callable[[EphemeralEvent], Awaitable[None] | None]


class _Subscription:
    def __init__(self, sub_id: str, room_id: str, callback: EphemeralCallback, loop: asyncio.AbstractEventLoop) -> None:
        self.id = sub_id
        self.room_id = room_id
        self.callback = callback
        self.loop = loop
        self.hub: RoomHub | None = None
        self.cancelled = False

    async def relay(self, message: dict[str, Any], out: dict[str, Any]) -> None:
        if not message.get("kind"):
            return
        frame = json.loads(message["text"])
        data = {k: v for k, v in frame.items() if k not in ("type", "kind")}
        result = self.callback(EphemeralEvent(self.room_id, frame["kind"], data))
        if inspect.isawaitable(result):
            await result

    async def start(self) -> None:
        hub = _hub_for(self.room_id, self)
        self.hub = hub
        await asyncio.shield(hub.ready)
        if self.cancelled:
            await self.stop()

    async def stop(self) -> None:
        self.cancelled = True
        if self.hub is not None:
            hub, self.hub = self.hub, None
            await room_hub_leave(hub, self)


_subscriptions: dict[str, _Subscription] = {}
_subscriptions_lock = threading.Lock()


def _subscription_loop() -> asyncio.AbstractEventLoop:
    running = _running_loop()
    if running is not None:
        if not _live(_server_loop):
            bind_server_loop(running)
        return running
    if _live(_server_loop):
        return _server_loop
    return _background_loop()


def subscribe_room(room_id: str, callback: EphemeralCallback, *, timeout: float = 10.0) -> str:
    """Call ``callback(EphemeralEvent)`` for each ephemeral event of ``room_id``; returns the subscription id.

    Events come from every process when the channel layer is Redis. The
    callback runs on the event loop that serves this process's sockets (or on
    the publisher thread's loop in a process without one): keep it short, or
    make it a coroutine function. From sync code this returns once the
    subscription is live; from async code use ``asubscribe_room`` for that.
    """
    loop = _subscription_loop()
    sub = _Subscription(uuid.uuid4().hex, room_id, callback, loop)
    with _subscriptions_lock:
        _subscriptions[sub.id] = sub
    if _running_loop() is loop:
        loop.create_task(sub.start())
    else:
        asyncio.run_coroutine_threadsafe(sub.start(), loop).result(timeout)
    return sub.id


async def asubscribe_room(room_id: str, callback: EphemeralCallback) -> str:
    """``subscribe_room`` from async code, returning once events published from now on will arrive."""
    loop = _subscription_loop()
    sub = _Subscription(uuid.uuid4().hex, room_id, callback, loop)
    with _subscriptions_lock:
        _subscriptions[sub.id] = sub
    await sub.start()
    return sub.id


def unsubscribe_room(subscription_id: str, *, timeout: float = 10.0) -> bool:
    """Stop a subscription; False if there was none with that id."""
    with _subscriptions_lock:
        sub = _subscriptions.pop(subscription_id, None)
    if sub is None:
        return False
    sub.cancelled = True
    if sub.loop.is_closed():
        return True
    if _running_loop() is sub.loop:
        sub.loop.create_task(sub.stop())
    elif sub.loop.is_running():
        asyncio.run_coroutine_threadsafe(sub.stop(), sub.loop).result(timeout)
    return True
