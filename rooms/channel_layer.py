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
- the expiry sweep at most once a second, which also drops idle queues.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

SWEEP_INTERVAL_SECONDS = 1.0


class RoomKitInMemoryChannelLayer(InMemoryChannelLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
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
