"""An in-memory channel layer for the embedded default, without the stock one's per-message costs.

Channels' ``InMemoryChannelLayer`` deep-copies every message for every
recipient, starts a task per recipient in ``group_send``, builds a new queue
per message, and scans every channel and group for expiry on each send and
receive: that scan grows with the number of channels, so with thousands of
idle sockets open every publish pays for all of them. This layer keeps the
same semantics (capacity, message expiry, group expiry, a channel whose
message expired leaves its groups, the ``ChannelFull`` error for direct sends)
with:

- no copy: messages are shared between recipients. Everything this project
  publishes is a fresh dict that consumers only read;
- ``group_send`` hands the message to each member in one pass, no tasks: to a
  receiver already waiting directly (no queue at all), else into the
  member's queue; a member whose queue is full misses that live frame (as
  with the stock layer) and catches up by ``seq`` on resume. Its cost is the
  group's size, whatever else is open;
- expiry off the publish and receive paths. A receive drops its own
  channel's expired messages before taking one (so an expired message is
  never delivered); everything else is kept in one heap of deadlines (the
  first queued message of each channel that holds any, each group
  membership) and handled by a timer on the event loop, at most
  ``EXPIRY_BATCH`` entries per turn of the loop: an idle channel costs
  nothing, and a publish never pays for another room's channels;
- small per-channel state (``_Channel``, slotted; no ``asyncio.Queue``), and
  a channel nobody waits on, nothing is queued in and no group holds is
  forgotten at once: a closed socket leaves nothing behind;
- a default capacity of 10,000 messages per channel (the stock default is
  100): a room hub's channel (``rooms.realtime.broadcast.RoomHub``, one per room and
  process) carries every frame of its room, and a burst published from sync
  code lands in it before the hub task runs.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import heapq
import logging
import math
import time
from collections import deque
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer
from channels_redis.core import BoundedQueue, ChannelLock, RedisChannelLayer

logger = logging.getLogger(__name__)

DEFAULT_CAPACITY = 10_000
# Deadlines due within this long of each other are handled in one timer call.
EXPIRY_SLACK_SECONDS = 1.0
# Heap entries handled per timer call; the rest wait for the next turn of the
# loop, so expiring a crowd never holds a message up for long.
EXPIRY_BATCH = 256
# Entries whose channel or membership went away stay in the heap until due
# (a membership's in a day); once they are more than half of it, and at
# least this many, the timer rebuilds the heap without them.
COMPACT_MIN_STALE = 64

_Item = tuple[float, dict]  # (monotonic expiry, message)


class _Channel:
    """One channel's queued messages, waiting receivers and group memberships."""

    __slots__ = ("messages", "waiters", "groups", "expiry_at")

    def __init__(self) -> None:
        self.messages: deque[_Item] | None = None  # None while empty: an idle channel holds no deque
        self.waiters: list[asyncio.Future] | None = None
        # group -> deadline of its membership's pending heap entry
        self.groups: dict[str, float] | None = None
        self.expiry_at: float | None = None  # deadline of the pending heap entry for queued messages

    def idle(self) -> bool:
        return not self.messages and not self.waiters and not self.groups


class RoomKitInMemoryChannelLayer(InMemoryChannelLayer):
    """``InMemoryChannelLayer``'s contract, with costs that follow the work asked for (see the module)."""

    def __init__(self, *args: Any, capacity: int = DEFAULT_CAPACITY, **kwargs: Any) -> None:
        super().__init__(*args, capacity=capacity, **kwargs)
        self.channels: dict[str, _Channel] = {}
        self.groups: dict[str, dict[str, float]] = {}  # group -> channel -> monotonic join time
        # (deadline, channel, group): group "" is the channel's first queued message.
        self._deadlines: list[tuple[float, str, str]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        self._timer_at = math.inf
        self._stale = 0  # heap entries that no longer match a channel or membership
        # Heap entries examined, all by the timer: publishes and receives never add to it.
        self.expiry_checks = 0

    @property
    def scheduled_expiries(self) -> int:
        """Deadlines in the heap, stale ones included (they are compacted away in bulk)."""
        return len(self._deadlines)

    # Channels ----------------------------------------------------------------------

    def _channel(self, name: str) -> _Channel:
        ch = self.channels.get(name)
        if ch is None:
            ch = self.channels[name] = _Channel()
        return ch

    def _forget_if_idle(self, name: str, ch: _Channel) -> None:
        if ch.idle() and self.channels.get(name) is ch:
            del self.channels[name]
            if ch.expiry_at is not None:
                self._went_stale()

    def _offer(self, name: str, ch: _Channel, item: _Item, now: float) -> bool:
        """Hand ``item`` to a waiting receiver, else queue it; False if the queue is full."""
        waiters = ch.waiters
        while waiters:
            waiter = waiters.pop(0)
            if not waiter.done():
                if not waiters:
                    ch.waiters = None
                waiter.set_result(item)
                return True
        ch.waiters = None
        messages = ch.messages
        if messages is None:
            messages = ch.messages = deque()
        elif len(messages) >= self.get_capacity(name):
            if messages[0][0] > now:
                return False
            self._drop_expired(name, ch, now)
            self.channels[name] = ch  # dropping may have forgotten it: it holds a message again
            messages = ch.messages = ch.messages if ch.messages is not None else deque()
        messages.append(item)
        if ch.expiry_at is None:
            ch.expiry_at = item[0]
            self._schedule(item[0], name, "")
        return True

    def _drop_expired(self, name: str, ch: _Channel, now: float) -> None:
        """Drop the channel's expired messages; as with the stock layer, its reader is gone: it leaves its groups."""
        messages = ch.messages
        dropped = False
        while messages and messages[0][0] <= now:
            messages.popleft()
            dropped = True
        if not messages:
            ch.messages = None
        if dropped:
            self._leave_groups(name, ch)

    def _requeue(self, name: str, item: _Item) -> None:
        """A message handed to a receiver that was cancelled before it ran: first in line again."""
        ch = self._channel(name)
        if ch.waiters:
            self._offer(name, ch, item, time.monotonic())
            return
        if ch.messages is None:
            ch.messages = deque()
        ch.messages.appendleft(item)
        if ch.expiry_at is None or item[0] < ch.expiry_at:
            if ch.expiry_at is not None:
                self._went_stale()
            ch.expiry_at = item[0]
            self._schedule(item[0], name, "")

    async def send(self, channel: str, message: dict) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        now = time.monotonic()
        if not self._offer(channel, self._channel(channel), (now + self.expiry, message), now):
            raise ChannelFull(channel)

    async def receive(self, channel: str) -> dict:
        self.require_valid_channel_name(channel)
        ch = self._channel(channel)
        if ch.messages:
            self._drop_expired(channel, ch, time.monotonic())
            if ch.messages:
                _, message = ch.messages.popleft()
                if not ch.messages:
                    ch.messages = None
                self._forget_if_idle(channel, ch)
                return message
            ch = self._channel(channel)  # dropping may have forgotten it
        waiter = asyncio.get_running_loop().create_future()
        if ch.waiters is None:
            ch.waiters = [waiter]
        else:
            ch.waiters.append(waiter)
        try:
            _, message = await waiter
            return message
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._requeue(channel, waiter.result())
            raise
        finally:
            if ch.waiters is not None and waiter in ch.waiters:
                ch.waiters.remove(waiter)
            if not ch.waiters:
                ch.waiters = None
            self._forget_if_idle(channel, ch)

    # Groups -------------------------------------------------------------------------

    async def group_add(self, group: str, channel: str) -> None:
        self.require_valid_group_name(group)
        self.require_valid_channel_name(channel)
        now = time.monotonic()
        self.groups.setdefault(group, {})[channel] = now  # a renewal moves the join time only
        ch = self._channel(channel)
        if ch.groups is None:
            ch.groups = {}
        if group not in ch.groups:
            deadline = ch.groups[group] = now + self.group_expiry
            self._schedule(deadline, channel, group)

    async def group_discard(self, group: str, channel: str) -> None:
        self.require_valid_channel_name(channel)
        self.require_valid_group_name(group)
        self._discard(group, channel)

    def _discard(self, group: str, channel: str, *, entry_due: bool = False) -> None:
        """End a membership (``entry_due``: its heap entry is the one being handled)."""
        members = self.groups.get(group)
        if members is not None:
            members.pop(channel, None)
            if not members:
                del self.groups[group]
        ch = self.channels.get(channel)
        if ch is not None and ch.groups:
            if ch.groups.pop(group, None) is not None and not entry_due:
                self._went_stale()
            if not ch.groups:
                ch.groups = None
            self._forget_if_idle(channel, ch)

    def _leave_groups(self, name: str, ch: _Channel) -> None:
        for group in list(ch.groups or ()):
            self._discard(group, name)

    def _remove_from_groups(self, channel: str) -> None:
        ch = self.channels.get(channel)
        if ch is not None:
            self._leave_groups(channel, ch)

    async def group_send(self, group: str, message: dict) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_group_name(group)
        members = self.groups.get(group)
        if not members:
            return
        now = time.monotonic()
        item = (now + self.expiry, message)
        joined_after = now - self.group_expiry
        refused = 0
        for channel, joined in list(members.items()):
            if joined <= joined_after:  # expired membership the timer has not reached yet
                self._discard(group, channel)
            elif not self._offer(channel, self._channel(channel), item, now):
                refused += 1
        if refused:
            # Known, not silent: the room hub recovers a lost event frame from
            # the database (rooms.realtime.broadcast), and the count says how often.
            _note_drop("refused", refused, f"{refused} of {len(members)} queues in group {group} were full")

    async def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_loop, self._timer_at = None, None, math.inf
        self.channels, self.groups, self._deadlines, self._stale = {}, {}, [], 0

    # Expiry: a heap of deadlines, handled by a timer -----------------------------------

    def _schedule(self, deadline: float, channel: str, group: str) -> None:
        heapq.heappush(self._deadlines, (deadline, channel, group))
        self._arm()

    def _arm(self, delay: float | None = None) -> None:
        """Make sure a timer on the running loop will handle the earliest deadline."""
        if not self._deadlines:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not on a loop: the next operation on one arms it
        at = self._deadlines[0][0] + EXPIRY_SLACK_SECONDS if delay is None else time.monotonic() + delay
        timer = self._timer
        if timer is not None and self._timer_loop is loop and self._timer_at <= at:
            return
        if timer is not None:
            timer.cancel()
        # The layer serves one loop at a time (Daphne's; a test's): the timer
        # follows the loop that uses the layer now.
        self._timer = loop.call_later(max(0.0, at - time.monotonic()), self._expire_due)
        self._timer_loop, self._timer_at = loop, at

    def _went_stale(self) -> None:
        self._stale += 1
        if self._stale >= COMPACT_MIN_STALE and self._stale * 2 > len(self._deadlines):
            self._arm(0.0)  # the timer compacts, off the caller's path

    def _live(self, entry: tuple[float, str, str]) -> bool:
        deadline, name, group = entry
        ch = self.channels.get(name)
        if ch is None:
            return False
        if group:
            return bool(ch.groups) and ch.groups.get(group) == deadline
        return ch.expiry_at == deadline

    def _expire_due(self, budget: int | None = EXPIRY_BATCH) -> None:
        self._timer, self._timer_at = None, math.inf
        if self._stale >= COMPACT_MIN_STALE and self._stale * 2 > len(self._deadlines):
            self._deadlines = [entry for entry in self._deadlines if self._live(entry)]
            heapq.heapify(self._deadlines)
            self._stale = 0
        now = time.monotonic()
        heap = self._deadlines
        while heap and heap[0][0] <= now and budget != 0:
            entry = heapq.heappop(heap)
            self.expiry_checks += 1
            if budget is not None:
                budget -= 1
            if not self._live(entry):
                self._stale = max(0, self._stale - 1)
                continue
            deadline, channel, group = entry
            if group:
                self._expire_membership(deadline, channel, group, now)
            else:
                self._expire_messages(deadline, channel, now)
        if heap:
            self._arm(0.0 if heap[0][0] <= now else None)

    def _expire_messages(self, deadline: float, name: str, now: float) -> None:
        ch = self.channels[name]
        ch.expiry_at = None
        self._drop_expired(name, ch, now)
        if ch.messages:
            ch.expiry_at = ch.messages[0][0]
            heapq.heappush(self._deadlines, (ch.expiry_at, name, ""))
        else:
            self._forget_if_idle(name, ch)

    def _expire_membership(self, deadline: float, name: str, group: str, now: float) -> None:
        ch = self.channels[name]
        joined = self.groups.get(group, {}).get(name)
        if joined is None or joined + self.group_expiry <= now:
            self._discard(group, name, entry_due=True)
            return
        ch.groups[group] = joined + self.group_expiry  # renewed since: wait for the new deadline
        heapq.heappush(self._deadlines, (joined + self.group_expiry, name, group))

    def _clean_expired(self) -> None:
        """Everything due, now (the stock layer's name; nothing here calls it on a hot path)."""
        self._expire_due(budget=None)


class _ReceiveCleanLock(ChannelLock):
    """channels-redis' per-key receive lock, forgetting a waiter that was cancelled.

    Upstream counts a waiter in ``acquire`` and uncounts it only in
    ``release``: a receive cancelled while it waits (a socket closing while
    its room's frames arrive) leaves the count up, so the key's lock is never
    dropped and stays bound to that event loop. A process that runs more than
    one loop over its life (the test suite: one per test) then fails the next
    contended receive with "bound to a different event loop". Daphne runs one
    loop and never sees it.
    """

    async def acquire(self, channel: str) -> bool:
        self.wait_counts[channel] += 1
        try:
            return await self.locks[channel].acquire()
        except BaseException:
            self.wait_counts[channel] -= 1
            if self.wait_counts[channel] < 1 and not self.locks[channel].locked():
                del self.locks[channel]
                del self.wait_counts[channel]
            raise


# Messages the Redis layer could not deliver, per process (also logged, at
# most every DROP_LOG_INTERVAL seconds): a full inbox refused a group message,
# or a local buffer overflowed.
redis_layer_stats = {"refused": 0, "overflowed": 0}
DROP_LOG_INTERVAL = 10.0
_last_drop_log = {"refused": 0.0, "overflowed": 0.0}


def _note_drop(kind: str, count: int, detail: str) -> None:
    redis_layer_stats[kind] += count
    now = time.monotonic()
    if now - _last_drop_log[kind] >= DROP_LOG_INTERVAL:
        _last_drop_log[kind] = now
        total = redis_layer_stats[kind]
        logger.warning("channel layer %s %s message(s): %s (%s so far in this process)", kind, count, detail, total)


class _CountedBoundedQueue(BoundedQueue):
    """channels-redis' per-channel receive buffer, which drops its oldest message when full: counted and logged."""

    def put_nowait(self, item: Any) -> None:
        if self.full():
            _note_drop("overflowed", 1, f"a local receive buffer held {self.maxsize}; its oldest was dropped")
        super().put_nowait(item)


# channels-redis' own group_send script: add to each member's inbox unless it
# is at capacity, and count the members skipped.
_GROUP_SEND_LUA = """
    local over_capacity = 0
    local current_time = ARGV[#ARGV - 1]
    local expiry = ARGV[#ARGV]
    for i=1,#KEYS do
        if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + #KEYS]) then
            redis.call('ZADD', KEYS[i], current_time, ARGV[i])
            redis.call('EXPIRE', KEYS[i], expiry)
        else
            over_capacity = over_capacity + 1
        end
    end
    return over_capacity
"""


# Take up to ARGV[1] more messages off an inbox, moving them to its backup
# (in flight) set in the same step, as channels-redis does with one.
_POP_MORE_LUA = """
    local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
    for i = 1, #popped, 2 do
        redis.call('ZADD', KEYS[2], popped[i + 1], popped[i])
    end
    return popped
"""

# Add several messages to each member's inbox, in order, unless it is at
# capacity. ARGV: capacities (one per key), now, expiry, score step, then the
# messages, message-major (for each message, one serialized copy per key).
_GROUP_SEND_MANY_LUA = """
    local n = #KEYS
    local now = tonumber(ARGV[n + 1])
    local expiry = ARGV[n + 2]
    local step = tonumber(ARGV[n + 3])
    local first = n + 4
    local count = (#ARGV - first + 1) / n
    local refused = 0
    for m = 0, count - 1 do
        for i = 1, n do
            if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i]) then
                redis.call('ZADD', KEYS[i], now + m * step, ARGV[first + m * n + i - 1])
            else
                refused = refused + 1
            end
        end
    end
    for i = 1, n do
        redis.call('EXPIRE', KEYS[i], expiry)
    end
    return refused
"""

# Messages taken off this process's inbox per round trip when more wait.
RECEIVE_BATCH = 200


class RoomKitRedisChannelLayer(RedisChannelLayer):
    """channels-redis' layer with the receive-lock fix above, batched I/O, and its dropped messages counted and logged.

    - Upstream skips a group member whose inbox is full with an INFO line and
      drops a local buffer's oldest message silently; here both are counted in
      ``redis_layer_stats`` and logged as warnings. (Room event frames lost
      this way are still recovered by ``rooms.realtime.broadcast.RoomHub`` from the
      database; other frames are not.)
    - Upstream receives a process's messages one per four round trips to
      Redis. When more are waiting, this takes up to ``RECEIVE_BATCH`` in one
      more trip (moved to the in-flight set atomically, as upstream does with
      one) and hands them out from memory, in order: a process drains a
      backlog (a burst of streamed AI chunks) in a fraction of the trips.
    - ``group_send_many`` adds several messages to a group in one script, in
      order, and ``groups_send`` does it for several groups, looking up all
      their members in one trip; ``rooms.realtime.broadcast``'s publisher
      hands it what it has queued.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.receive_clean_locks = _ReceiveCleanLock()
        self.receive_buffer = collections.defaultdict(functools.partial(_CountedBoundedQueue, self.capacity))
        # Per process inbox key: messages taken off Redis and not yet handed out.
        self._taken: dict[str, collections.deque] = collections.defaultdict(collections.deque)

    @staticmethod
    def _unpack(channel: str, message: dict) -> tuple[Any, dict]:
        if "__asgi_channel__" in message:
            channel = message.pop("__asgi_channel__")
        return channel, message

    async def receive_single(self, channel: str) -> tuple[Any, dict]:
        if "!" not in channel:
            return await super().receive_single(channel)
        taken = self._taken[channel]
        if taken:
            # Handed out in the order they were queued; upstream's receive()
            # puts each into its channel's buffer before asking for the next.
            return taken.popleft()
        # Upstream's receive_single (channels-redis 4.3), then the batch.
        index = self.consistent_hash(channel)
        channel_key = self.prefix + channel
        await self.receive_clean_locks.acquire(channel_key)
        try:
            content = None
            while content is None:
                content = await self._brpop_with_clean(index, channel_key, timeout=self.brpop_timeout)
            backup = self._backup_channel_name(channel_key)
            connection = self.connection(index)
            more = await connection.eval(_POP_MORE_LUA, 2, channel_key, backup, RECEIVE_BATCH - 1)
            members = [content, *more[0::2]]
            # No await from here to the hand-out: a cancellation leaves every
            # member in the backup set, which the next receive puts back.
            taken.extend(self._unpack(channel, self.deserialize(member)) for member in more[0::2])
            cleaner = asyncio.ensure_future(connection.zrem(backup, *members))
            self.receive_cleaners.append(cleaner)

            def _cleanup_done(cleaner: asyncio.Future) -> None:
                self.receive_cleaners.remove(cleaner)
                self.receive_clean_locks.release(channel_key)

            cleaner.add_done_callback(_cleanup_done)
        except BaseException:
            self.receive_clean_locks.release(channel_key)
            raise
        return self._unpack(channel, self.deserialize(content))

    async def groups_send(self, groups: dict[str, list[dict]]) -> None:
        """``group_send_many`` for several groups, every group's members looked up in one trip per Redis server.

        What it buys: each stored event goes to two groups (its room's and its
        operators'), and most rooms have nobody watching. Looked up one group
        at a time that was two round trips per group on the event loop — a
        third of a webhook server's event-loop time at 400 requests/s — even
        with no one to send to; now a publisher's batch that finds no one
        listening costs one trip. A failure to one group is logged and the
        others are still sent.
        """
        members = await self._group_members(list(groups))
        for group, messages in groups.items():
            if members[group]:
                try:
                    await self.group_send_many(group, messages, members=members[group])
                except Exception:
                    logger.exception("group_send to %s failed", group)

    async def _group_members(self, groups: list[str]) -> dict[str, list[str]]:
        """Each group's live members (expired ones removed first, as ``group_send`` does), pipelined per server."""
        by_connection: dict[int, list[str]] = collections.defaultdict(list)
        for group in groups:
            assert self.require_valid_group_name(group), "Group name not valid"
            by_connection[self.consistent_hash(group)].append(group)
        cutoff = int(time.time()) - self.group_expiry
        members: dict[str, list[str]] = {}
        for index, on_server in by_connection.items():
            pipe = self.connection(index).pipeline(transaction=False)
            for group in on_server:
                pipe.zremrangebyscore(self._group_key(group), min=0, max=cutoff)
                pipe.zrange(self._group_key(group), 0, -1)
            replies = await pipe.execute()
            for i, group in enumerate(on_server):
                members[group] = [name.decode("utf8") for name in replies[2 * i + 1]]
        return members

    async def group_send_many(self, group: str, messages: list[dict], *, members: list[str] | None = None) -> None:
        """``group_send`` of each message, in order, in one script per Redis server (to ``members`` if already looked up)."""
        if members is None:
            members = (await self._group_members([group]))[group]
        if not members:
            return
        mapped = [self._map_channel_keys_to_connection(members, message) for message in messages]
        by_connection, _, capacities = mapped[0]
        for index, channel_keys in by_connection.items():
            connection = self.connection(index)
            pipe = connection.pipeline()
            for channel_key in channel_keys:
                pipe.zremrangebyscore(channel_key, min=0, max=int(time.time()) - int(self.expiry))
            await pipe.execute()
            args: list[Any] = [capacities[k] for k in channel_keys] + [time.time(), self.expiry, 1e-6]
            for _, serialized, _ in mapped:
                args += [serialized[k] for k in channel_keys]
            refused = await connection.eval(_GROUP_SEND_MANY_LUA, len(channel_keys), *channel_keys, *args)
            if refused:
                _note_drop("refused", refused, f"{refused} messages to {len(members)} inboxes in group {group}: full")

    async def group_send(self, group: str, message: dict) -> None:
        # Upstream's group_send (channels-redis 4.3), warning instead of INFO on a refusal.
        assert self.require_valid_group_name(group), "Group name not valid"
        key = self._group_key(group)
        connection = self.connection(self.consistent_hash(group))
        await connection.zremrangebyscore(key, min=0, max=int(time.time()) - self.group_expiry)
        channel_names = [x.decode("utf8") for x in await connection.zrange(key, 0, -1)]
        by_connection, messages, capacities = self._map_channel_keys_to_connection(channel_names, message)
        for index, channel_keys in by_connection.items():
            connection = self.connection(index)
            pipe = connection.pipeline()
            for channel_key in channel_keys:
                pipe.zremrangebyscore(channel_key, min=0, max=int(time.time()) - int(self.expiry))
            await pipe.execute()
            args = [messages[k] for k in channel_keys] + [capacities[k] for k in channel_keys] + [time.time(), self.expiry]
            refused = await connection.eval(_GROUP_SEND_LUA, len(channel_keys), *channel_keys, *args)
            if refused:
                _note_drop("refused", refused, f"{refused} of {len(channel_names)} inboxes in group {group} were full")
