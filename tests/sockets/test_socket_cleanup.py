"""Closed chat sockets leave nothing behind, and are freed without the garbage collector.

Many sockets open and close through the project's real ASGI application; then
this process's room hubs, presence registry and (embedded default) channel
layer hold nothing for them. With the collector switched off, every consumer
and hub is gone as soon as its socket is: per-socket objects hold no
reference cycles, so memory comes back by reference counting alone (which is
what lets ``manage.py serve`` freeze long-lived objects out of the collector's
reach, ``roomkit_project.gc_tuning``).
"""

from __future__ import annotations

import asyncio
import gc
import time
import weakref

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.test import TransactionTestCase

from channels_app.webchat.sessions import chat_session_start
from rooms.realtime import broadcast as realtime
from rooms.realtime import presence
from rooms.realtime.channel_layer import RoomKitInMemoryChannelLayer
from tests.sockets.helpers import Sockets, is_ephemeral, join_room, next_frame

VISITORS = 60  # each alone in a room
SHARED = 4  # and one room with four participants


async def wait_until(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.01)


def _local_state() -> dict[str, int]:
    """What this process holds for open sockets (the hub registry is keyed by event loop)."""
    layer = get_channel_layer()
    state = {
        "hubs": len(realtime._hubs.get(asyncio.get_running_loop(), {})),
        "presence_rooms": len(presence._local.rooms),
    }
    if isinstance(layer, RoomKitInMemoryChannelLayer):
        state.update(layer_channels=len(layer.channels), layer_groups=len(layer.groups))
    return state


class ClosedSocketsLeaveNothingTest(TransactionTestCase):
    def setUp(self) -> None:
        self.sockets = Sockets()

    async def test_many_sockets_open_and_close_and_nothing_stays(self):
        visitors = [await sync_to_async(chat_session_start)(display_name=f"V{i}", open_now=True) for i in range(VISITORS)]
        host = await sync_to_async(chat_session_start)(display_name="Host", open_now=True)
        guests = [await join_room(host.room_id, f"Guest {i}") for i in range(SHARED - 1)]
        tokens = [s.token for s in visitors] + [host.token] + [token for _, token in guests]
        before = _local_state()

        gc.collect()
        gc.disable()  # from here on only reference counting frees anything
        self.addCleanup(gc.enable)
        try:
            for token in tokens:
                await self.sockets.connect(token)
            # The shared room's last guest sees everyone online: presence works across them.
            last = self.sockets.open[-1]
            for guest_id, _ in guests[:-1]:
                await next_frame(last, is_ephemeral("presence", participant_id=guest_id, status="online"))

            hubs = realtime._hubs[asyncio.get_running_loop()]
            opened = _local_state()
            self.assertEqual(opened["hubs"] - before["hubs"], VISITORS + 1)
            self.assertEqual(opened["presence_rooms"] - before["presence_rooms"], VISITORS + 1)
            consumers = [weakref.ref(sink) for hub in hubs.values() for sink in hub.sinks]
            hub_refs = [weakref.ref(hub) for hub in hubs.values()]
            self.assertEqual(len(consumers), VISITORS + SHARED)
            del hubs, last

            await self.sockets.close_all()
            await wait_until(lambda: _local_state() == before, f"this process holds nothing for the closed sockets ({before})")
            # Freed as the sockets closed, with the collector off: no cycles held them.
            await wait_until(
                lambda: not any(ref() is not None for ref in consumers + hub_refs),
                "closed sockets' consumers and hubs are freed",
            )
        finally:
            gc.enable()
