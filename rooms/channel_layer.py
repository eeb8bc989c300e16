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
import time
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer
from channels_redis.core import ChannelLock, RedisChannelLayer

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


class RoomKitRedisChannelLayer(RedisChannelLayer):
    """channels-redis' layer with the receive-lock fix above; otherwise unchanged."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.receive_clean_locks = _ReceiveCleanLock()
