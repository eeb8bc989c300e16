"""An in-memory channel layer for the embedded default, without the stock one's per-message costs.

Channels' ``InMemoryChannelLayer`` deep-copies every message for every
recipient, starts a task per recipient in ``group_send``, builds a new queue
per message, and scans every channel and group for expiry on each send and
receive: that scan grows with the group, so fan-out cost grows with its square.
This layer keeps the same semantics (capacity, expiry, group expiry, the
``ChannelFull`` error for direct sends) with:

- no copy: messages are shared between recipients. Everything this project
  publishes is a fresh dict that consumers only read;
- ``group_send`` puts into each member's queue in one pass, no tasks; a member
  whose queue is full misses that live frame (as with the stock layer) and
  catches up by ``seq`` on resume;
- the expiry sweep at most once a second, which also drops idle queues;
- a default capacity of 10,000 messages per channel (the stock default is
  100): a room hub's channel (``rooms.realtime.RoomHub``, one per room and
  process) carries every frame of its room, and a burst published from sync
  code lands in it before the hub task runs.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer
from channels_redis.core import BoundedQueue, ChannelLock, RedisChannelLayer

logger = logging.getLogger(__name__)

SWEEP_INTERVAL_SECONDS = 1.0
DEFAULT_CAPACITY = 10_000


class RoomKitInMemoryChannelLayer(InMemoryChannelLayer):
    def __init__(self, *args: Any, capacity: int = DEFAULT_CAPACITY, **kwargs: Any) -> None:
        super().__init__(*args, capacity=capacity, **kwargs)
        self._next_sweep = 0.0

    def _queue(self, channel: str) -> asyncio.Queue:
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(maxsize=self.get_capacity(channel))
        return queue

    def _maybe_sweep(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL_SECONDS
        self._clean_expired()
        # Queues nobody waits on and nothing is in: a consumer that went away.
        for channel, queue in list(self.channels.items()):
            if queue.empty() and not getattr(queue, "_getters", None):
                self.channels.pop(channel, None)

    async def send(self, channel: str, message: dict) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        try:
            self._queue(channel).put_nowait((time.time() + self.expiry, message))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

    async def receive(self, channel: str) -> dict:
        self.require_valid_channel_name(channel)
        self._maybe_sweep()
        _, message = await self._queue(channel).get()
        return message

    async def group_send(self, group: str, message: dict) -> None:
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_group_name(group)
        self._maybe_sweep()
        members = self.groups.get(group)
        if not members:
            return
        expires = time.time() + self.expiry
        for channel in list(members):
            try:
                self._queue(channel).put_nowait((expires, message))
            except asyncio.QueueFull:
                pass


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
      this way are still recovered by ``rooms.realtime.RoomHub`` from the
      database; other frames are not.)
    - Upstream receives a process's messages one per four round trips to
      Redis. When more are waiting, this takes up to ``RECEIVE_BATCH`` in one
      more trip (moved to the in-flight set atomically, as upstream does with
      one) and hands them out from memory, in order: a process drains a
      backlog (a burst of streamed AI chunks) in a fraction of the trips.
    - ``group_send_many`` adds several messages to a group in one script, in
      order; ``rooms.realtime``'s publisher uses it for what it has queued.
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

    async def group_send_many(self, group: str, messages: list[dict]) -> None:
        """``group_send`` of each message, in order, in one script per Redis server."""
        if len(messages) == 1:
            await self.group_send(group, messages[0])
            return
        assert self.require_valid_group_name(group), "Group name not valid"
        key = self._group_key(group)
        connection = self.connection(self.consistent_hash(group))
        await connection.zremrangebyscore(key, min=0, max=int(time.time()) - self.group_expiry)
        channel_names = [x.decode("utf8") for x in await connection.zrange(key, 0, -1)]
        if not channel_names:
            return
        mapped = [self._map_channel_keys_to_connection(channel_names, message) for message in messages]
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
                _note_drop("refused", refused, f"{refused} messages to {len(channel_names)} inboxes in group {group}: full")

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
