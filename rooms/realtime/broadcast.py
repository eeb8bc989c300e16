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

Order and completeness. Frames may reach a hub out of ``seq`` order (events
are published after their commits, from many threads and processes) or not
at all (a channel layer that refuses or expires a message). The hub is a gate:
it hands event frames to its sockets strictly in ``seq`` order; a gap that a
late frame does not fill within ``GAP_WAIT_SECONDS`` is filled from the
database (every event below a published ``seq`` is committed), and a check
every ``CATCH_UP_CHECK_SECONDS`` compares each hub with its room's
``last_seq``, so even a last frame that never came is sent. Events sockets do
not see travel as a bare ``seq`` so the gate can pass them without waiting.
A socket's live event stream is therefore complete and ordered from the
moment it joins; ``resume`` covers what came before.
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

from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import connection as db_connection

from rooms.realtime.catchup import room_last_seq, room_visible_events_between, rooms_last_seqs

logger = logging.getLogger(__name__)

FRAME = "room.frame"


def room_group(room_id: str) -> str:
    return f"room.{room_id}"


# The operators' room-list sockets (room-level changes).
STAFF_ROOMS_GROUP = "staff.rooms"


def staff_group(room_id: str) -> str:
    return f"staff.room.{room_id}"


def encode_frame(frame: dict[str, Any]) -> str:
    """JSON text for a frame that is always sendable as UTF-8.

    A string holding a lone UTF-16 surrogate (stored on a database that
    accepts it, or sent escaped in a client's JSON) has no UTF-8 form: the
    socket could not send it and channels-redis could not serialize it. Such
    a frame is written with JSON's ``\\u`` escapes instead, which every
    client's JSON parser reads back to the same string.
    """
    text = json.dumps(frame, separators=(",", ":"), ensure_ascii=False, default=str)
    if not text.isascii():  # O(1) for the common ASCII frame
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = json.dumps(frame, separators=(",", ":"), ensure_ascii=True, default=str)
    return text


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


# A pump takes what is queued, up to PUMP_BATCH at a time. When it finds at
# least COALESCE_AT waiting (it is falling behind: the layer is slower than
# the publishers), consecutive chunks of one stream are merged (below), so the
# layer carries fewer, larger messages exactly when it is loaded; a pump that
# keeps up sends every chunk as published.
PUMP_BATCH = 256
COALESCE_AT = 32

# A queued item: (group, message, stream chunk). The chunk, ``(stream_id,
# delta)``, is kept beside the encoded message so that consecutive chunks of
# one stream can be merged before they are sent; it never goes on the wire.
_Item = tuple[str, dict[str, Any], "tuple[str, str] | None"]


def _coalesced(batch: list[_Item]) -> list[tuple[str, dict[str, Any]]]:
    """The batch's messages in order, each stream's consecutive chunks merged into one.

    Chunks of a stream merge only while no other kind of frame for the same
    group comes between them, so every frame keeps its order relative to the
    stream's text (a tool call's status, the stream's end, an event).
    """
    out: list[list[Any]] = []
    open_chunks: dict[str, dict[str, int]] = {}  # group -> stream id -> index in out
    for group, message, chunk in batch:
        if chunk is None:
            open_chunks.pop(group, None)
            out.append([group, message, None])
            continue
        streams = open_chunks.setdefault(group, {})
        at = streams.get(chunk[0])
        if at is None:
            streams[chunk[0]] = len(out)
            out.append([group, message, [chunk]])
        else:
            out[at][2].append(chunk)
    sent: list[tuple[str, dict[str, Any]]] = []
    for group, message, chunks in out:
        if chunks is not None and len(chunks) > 1:
            stream_id = chunks[0][0]
            delta = "".join(d for _, d in chunks)
            message = {**message, "text": encode_frame({"type": "stream_chunk", "stream_id": stream_id, "delta": delta})}
        sent.append((group, message))
    return sent


def _by_group(messages: list[tuple[str, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    # Order matters within a group (one room's sockets, one operator page), not
    # across groups: each group's messages keep their order.
    groups: dict[str, list[dict[str, Any]]] = {}
    for group, message in messages:
        groups.setdefault(group, []).append(message)
    return groups


async def _pump(queue: asyncio.Queue) -> None:
    layer = get_channel_layer()
    send_groups = getattr(layer, "groups_send", None)  # one trip for every group's members (Redis)
    while True:
        batch = [await queue.get()]
        while len(batch) < PUMP_BATCH and not queue.empty():
            batch.append(queue.get_nowait())
        messages = _coalesced(batch) if len(batch) >= COALESCE_AT else [item[:2] for item in batch]
        groups = _by_group(messages)
        if send_groups is not None:
            try:
                await send_groups(groups)
            except Exception:
                logger.exception("sending to %d groups failed", len(groups))
            continue
        for group, group_messages in groups.items():
            try:
                for message in group_messages:
                    await layer.group_send(group, message)
            except Exception:
                logger.exception("group_send to %s failed", group)


def _enqueue_on_loop(group: str, message: dict[str, Any], chunk: tuple[str, str] | None = None) -> None:
    loop = asyncio.get_running_loop()
    queue = _queues.get(loop)
    if queue is None:
        queue = _queues[loop] = asyncio.Queue()
        loop.create_task(_pump(queue))
    queue.put_nowait((group, message, chunk))


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


def _enqueue_all_on_loop(items: list[_Item]) -> None:
    for group, message, chunk in items:
        _enqueue_on_loop(group, message, chunk)


_held = threading.local()


def _send(group: str, message: dict[str, Any], chunk: tuple[str, str] | None = None) -> None:
    held = getattr(_held, "items", None)
    if held is not None:
        held.append((group, message, chunk))
        return
    loop = _target_loop()
    if loop is None:
        return
    if _running_loop() is loop:
        _enqueue_on_loop(group, message, chunk)
    else:
        loop.call_soon_threadsafe(_enqueue_on_loop, group, message, chunk)


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
    """Send a stored event to the room's sockets (``public``) and to operators.

    An event the sockets must not see still sends its bare ``seq`` to the
    room's group: the hubs' order gate then knows that nothing visible is
    missing there and passes the next event without waiting for it.
    """
    message = {"type": FRAME, "text": encode_frame({"type": "event", "event": event}), "seq": event["seq"]}
    _send(room_group(room_id), message if public else {"type": FRAME, "seq": event["seq"]})
    _send(staff_group(room_id), message)
    # The inbox lists every conversation, not only the ones a page shows: a
    # small frame says which room moved (the page re-reads its rows).
    activity = {"type": "room_activity", "room_id": room_id, "seq": event["seq"], "event_type": event.get("type")}
    _send(STAFF_ROOMS_GROUP, {"type": FRAME, "text": encode_frame(activity)})


def announce_room_created(room_id: str) -> None:
    """Tell operators' room lists that a room exists (they re-read their rows)."""
    _send(STAFF_ROOMS_GROUP, {"type": FRAME, "text": encode_frame({"type": "room_created", "room_id": room_id})})


def announce_room_changed(room_id: str, *, lists_only: bool = False, **change: Any) -> None:
    """Tell operators that a room's inbox state changed (assignee, status, labels, read): they re-read it.

    ``lists_only``: only the lists need it (a read marker), not the room's open pages.
    """
    message = {"type": FRAME, "text": encode_frame({"type": "room_changed", "room_id": room_id, **change})}
    _send(STAFF_ROOMS_GROUP, message)
    if not lists_only:
        _send(staff_group(room_id), message)


def publish_ephemeral(room_id: str, kind: str, *, exclude_socket: str | None = None, **data: Any) -> None:
    """An ephemeral event to everyone in the room (but the socket ``exclude_socket``) and its operators; never stored."""
    text = encode_frame({"type": "ephemeral", "kind": kind, **data, "ts": time.time()})
    message: dict[str, Any] = {"type": FRAME, "text": text, "kind": kind}
    _send(room_group(room_id), {**message, "exclude": exclude_socket} if exclude_socket else message)
    # Operators see the customer typing and reading, and the AI at work, in the inbox.
    _send(staff_group(room_id), message)


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


def publish_tool_call_start(room_id: str, agent_id: str, tool_calls: list[dict[str, Any]], *, label: str = "") -> None:
    """An agent started calling tools (``[{"id", "name", "label"}]``): shown as status, never as message text.

    ``label`` is what the customer reads meanwhile ("Looking up your order…"); each call
    carries its own too. Arguments and results stay off the room's sockets: they are the
    model's and the operators' (the generation's tool log), not the customer's.
    """
    data: dict[str, Any] = {"agent_id": agent_id, "tool_calls": tool_calls}
    if label:
        data["label"] = label
    publish_ephemeral(room_id, "tool_call_start", **data)


def publish_tool_call_end(room_id: str, agent_id: str, duration_ms: int | float) -> None:
    publish_ephemeral(room_id, "tool_call_end", agent_id=agent_id, duration_ms=duration_ms)


def publish_agent_thinking(room_id: str, agent_id: str, *, thinking: bool = True, display_name: str = "") -> None:
    """An agent owes the room a reply (``thinking``) or no longer does: ``agent_thinking`` with ``state``.

    Published when its generation is queued (``start``) and when the generation
    ends (``stop``), whatever the outcome; clients also end it at the agent's
    ``stream_start``, its stored reply, or a timeout of their own.
    """
    publish_ephemeral(
        room_id, "agent_thinking", agent_id=agent_id, display_name=display_name, state="start" if thinking else "stop"
    )


def publish_stream_start(room_id: str, stream_id: str, agent_id: str) -> None:
    """An AI reply starts streaming; its chunks follow in order on the same path."""
    _publish(room_id, {"type": "stream_start", "stream_id": stream_id, "agent_id": agent_id})


def publish_stream_chunk(room_id: str, stream_id: str, delta: str) -> None:
    """A piece of a streamed reply; pieces still queued together are sent as one chunk."""
    frame = {"type": "stream_chunk", "stream_id": stream_id, "delta": delta}
    _send(room_group(room_id), {"type": FRAME, "text": encode_frame(frame)}, (stream_id, delta))


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


# The order gate: how long a hub waits for a late event frame before it reads
# the missing events from the database, and how often it compares each
# room's last_seq with what its sockets got (a last frame that never came).
GAP_WAIT_SECONDS = 0.05
CATCH_UP_CHECK_SECONDS = 2.0
# Frames held behind a gap the database cannot fill (it is down): beyond this
# many the gap is given up on (logged) rather than holding the room forever.
MAX_HELD_FRAMES = 10_000

# Frames the gates had to take from the database instead of the layer, per
# process: a channel layer dropping or badly delaying event frames shows here
# and in the log.
stats = {"recovered_events": 0, "gaps_given_up": 0}
# A hub logs its recoveries at most this often (a struggling layer would
# otherwise log a line per gap).
RECOVERY_LOG_INTERVAL = 10.0


class RoomHub:
    """This process's membership in one room's group, on one event loop.

    One channel-layer channel for the room instead of one per socket: a frame
    costs one channel-layer message per process, and each local socket gets
    the same pre-encoded text, without a queue, a task wake-up or a JSON
    encoding of its own.

    Event frames pass an order gate (see the module's docstring): ``last_seq``
    is the highest seq handed on (or known to be hidden); frames above the
    next one wait in ``_ahead`` until the gap closes or is filled from the
    database.
    """

    def __init__(self, room_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.room_id = room_id
        self.loop = loop
        self.group = room_group(room_id)
        self.sinks: dict[FrameSink, None] = {}  # insertion-ordered set
        self.channel: str | None = None
        self.ready: asyncio.Future = loop.create_future()
        self.closed = False
        self.last_seq = 0
        self._ahead: dict[int, dict[str, Any]] = {}
        self._gate = asyncio.Lock()
        self._gap_timer: asyncio.TimerHandle | None = None
        self._filling: asyncio.Task | None = None
        self._fill_failures = 0
        self._recovered = 0
        self._last_log = -RECOVERY_LOG_INTERVAL
        # The room's last_seq as the last check saw it, while the hub was behind it.
        self.behind: int | None = None
        self._task = loop.create_task(self._run())

    async def _run(self) -> None:
        layer = get_channel_layer()
        refresher = None
        try:
            # The layer's usual process-local name: channels-redis receives all
            # of a process's local channels through one key, by prefix.
            self.channel = await layer.new_channel()
            await layer.group_add(self.group, self.channel)
            # Joined: every event committed from now on will be published to
            # us. The room's last_seq now is where our stream starts; what
            # came before is for a socket's resume.
            self.last_seq = await _db(room_last_seq)(self.room_id)
            # Group memberships expire (a day by default): renew while we live.
            refresher = asyncio.ensure_future(self._renew(layer))
            _ensure_catch_up(self.loop)
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
        seq = message.get("seq")
        if seq is None:
            await self._relay(message)
            return
        if seq <= self.last_seq or seq in self._ahead:
            return  # already handed on (from the database, or a duplicate)
        self._ahead[seq] = message
        # While the gate is busy (a fill reading the database, or a flush
        # waiting on a socket), its holder hands this frame on in turn.
        if not self._gate.locked() and self._filling is None:
            async with self._gate:
                await self._flush()

    async def _relay(self, message: dict[str, Any]) -> None:
        out = {"type": "websocket.send", "text": message["text"]}
        for sink in tuple(self.sinks):
            try:
                await sink.relay(message, out)
            except Exception:
                logger.exception("relaying a frame of room %s failed", self.room_id)

    async def _flush(self) -> None:
        """Hand on the frames that follow ``last_seq`` without a gap; wait for the rest (gate held)."""
        while (self.last_seq + 1) in self._ahead:
            self.last_seq += 1
            message = self._ahead.pop(self.last_seq)
            if "text" in message:  # a bare seq: an event the sockets do not see
                await self._relay(message)
        if self._ahead and self._gap_timer is None and (self._filling is None or self._filling is asyncio.current_task()):
            self._gap_timer = self.loop.call_later(GAP_WAIT_SECONDS, self._start_fill)
        elif not self._ahead and self._gap_timer is not None:
            self._gap_timer.cancel()
            self._gap_timer = None

    def _start_fill(self) -> None:
        self._gap_timer = None
        if self._filling is None and not self.closed and (self._ahead or self.behind is not None):
            self._filling = self.loop.create_task(self._fill())

    async def _fill(self) -> None:
        """Send from the database what the layer did not deliver: below the first waiting frame, or up to ``behind``."""
        retry = False
        try:
            async with self._gate:
                while True:
                    if self._ahead:
                        target = min(self._ahead) - 1
                    elif self.behind is not None and self.behind > self.last_seq:
                        target = self.behind
                    else:
                        break
                    after = self.last_seq
                    if target > after:
                        events = await _db(room_visible_events_between)(self.room_id, after, target)
                        for event in events:
                            if event["seq"] > self.last_seq:
                                self.last_seq = event["seq"]
                                text = encode_frame({"type": "event", "event": event})
                                await self._relay({"type": FRAME, "text": text, "seq": event["seq"]})
                        if events:
                            self._note_recovered(len(events), after, target)
                        self.last_seq = max(self.last_seq, target)
                        # Frames of those seqs that came while we read: already sent.
                        for seq in [seq for seq in self._ahead if seq <= self.last_seq]:
                            del self._ahead[seq]
                    if self.behind is not None and self.behind <= self.last_seq:
                        self.behind = None
                    self._fill_failures = 0
                    await self._flush()
                    if self._ahead and min(self._ahead) > self.last_seq + 1:
                        # A new gap, opened while we read: give its frame its time.
                        break
        except asyncio.CancelledError:
            raise
        except Exception:
            self._fill_failures += 1
            logger.exception("room %s: reading missing events failed (attempt %s)", self.room_id, self._fill_failures)
            if len(self._ahead) > MAX_HELD_FRAMES:
                self._give_up_gap()
            retry = True
        finally:
            self._filling = None
        if retry and not self.closed:
            if self._gap_timer is not None:
                self._gap_timer.cancel()
            delay = min(5.0, GAP_WAIT_SECONDS * 2**self._fill_failures)
            self._gap_timer = self.loop.call_later(delay, self._start_fill)

    def _note_recovered(self, count: int, after_seq: int, through_seq: int) -> None:
        stats["recovered_events"] += count
        self._recovered += count
        now = time.monotonic()
        if now - self._last_log >= RECOVERY_LOG_INTERVAL:
            self._last_log = now
            logger.warning(
                "room %s: event frames of seqs %s..%s did not arrive in time; %s sent from the database "
                "(%s for this room since it joined, %s in this process)",
                self.room_id,
                after_seq + 1,
                through_seq,
                count,
                self._recovered,
                stats["recovered_events"],
            )

    def _give_up_gap(self) -> None:
        # The database has been unreachable for long: go on with what came,
        # and say so. (A socket's resume replays the gap once it is back.)
        stats["gaps_given_up"] += 1
        first = min(self._ahead)
        logger.error("room %s: giving up on event seqs %s..%s (database unreachable)", self.room_id, self.last_seq + 1, first - 1)
        self.last_seq = first - 1
        self.loop.create_task(self._flush_now())

    async def _flush_now(self) -> None:
        async with self._gate:
            await self._flush()

    def check_behind(self, room_last_seq: int) -> None:
        """The catch-up check saw the room at ``room_last_seq``: fill what is still missing since the last check."""
        if self.closed:
            return
        if self.behind is not None and self.last_seq < self.behind:
            # Missing for a whole check interval: no frame is coming for it.
            self._start_fill()
            return
        self.behind = room_last_seq if room_last_seq > self.last_seq else None

    async def close(self) -> None:
        self.closed = True
        self._task.cancel()
        if self._gap_timer is not None:
            self._gap_timer.cancel()
            self._gap_timer = None
        if self._filling is not None:
            self._filling.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        if self.channel is not None:
            try:
                await get_channel_layer().group_discard(self.group, self.channel)
            except Exception:
                logger.exception("leaving group %s failed", self.group)


def _db(fn: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """``fn`` on a worker thread of the loop, its database connection closed after.

    Off the thread consumers share for their sync work: a hub's reads must
    not queue behind (or hold up) a socket's message. They are rare (a hub's
    start, a gap, a check every few seconds), so the connection is not kept:
    an idle worker thread of a long-lived loop would otherwise hold one open.
    """

    def closing(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            db_connection.close()

    return database_sync_to_async(closing, thread_sensitive=False)


# loop -> room_id -> hub. Touched only from the loop's own thread.
_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, RoomHub]] = weakref.WeakKeyDictionary()
# loop -> the task that compares its hubs with their rooms' last_seq.
_catch_up_tasks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task] = weakref.WeakKeyDictionary()


def _ensure_catch_up(loop: asyncio.AbstractEventLoop) -> None:
    task = _catch_up_tasks.get(loop)
    if task is None or task.done():
        _catch_up_tasks[loop] = loop.create_task(_catch_up(loop))


async def _catch_up(loop: asyncio.AbstractEventLoop) -> None:
    """Every ``CATCH_UP_CHECK_SECONDS``, one query for all of this loop's rooms: is any hub behind its room?"""
    while True:
        await asyncio.sleep(CATCH_UP_CHECK_SECONDS)
        hubs = [h for h in _hubs.get(loop, {}).values() if not h.closed and h.ready.done()]
        if not hubs:
            return
        try:
            last_seqs = await _db(rooms_last_seqs)([h.room_id for h in hubs])
        except Exception:
            logger.exception("checking rooms' last seq failed")
            continue
        for hub in hubs:
            hub.check_behind(last_seqs.get(hub.room_id, 0))


def _hub_for(room_id: str, sink: FrameSink) -> RoomHub:
    loop = asyncio.get_running_loop()
    hubs = _hubs.setdefault(loop, {})
    hub = hubs.get(room_id)
    if hub is None or hub.closed:
        hub = hubs[room_id] = RoomHub(room_id, loop)
    hub.sinks[sink] = None
    return hub


async def room_hub_join(room_id: str, sink: FrameSink) -> RoomHub:
    """Start relaying ``room_id``'s frames to ``sink``; returns once this process is in the group.

    From then on the sink gets every event of the room the sockets see, in
    ``seq`` order, after the room's ``last_seq`` at the moment its hub joined.
    """
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
    if not hubs:
        task = _catch_up_tasks.pop(hub.loop, None)
        if task is not None:
            task.cancel()
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
