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
  100): a room hub's channel (``rooms.realtime.RoomHub``, one per room and
  process) carries every frame of its room, and a burst published from sync
  code lands in it before the hub task runs.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections import deque
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer
from channels_redis.core import ChannelLock, RedisChannelLayer

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
        for channel, joined in list(members.items()):
            if joined <= joined_after:  # expired membership the timer has not reached yet
                self._discard(group, channel)
            else:
                self._offer(channel, self._channel(channel), item, now)

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


class RoomKitRedisChannelLayer(RedisChannelLayer):
    """channels-redis' layer with the receive-lock fix above; otherwise unchanged."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.receive_clean_locks = _ReceiveCleanLock()
