"""Sockets that stay quiet for a while still hear their room.

The redis-py 8 trap: redis-py defaults ``socket_timeout`` to 5 s while
channels-redis blocks in ``BZPOPMIN`` for up to 5 s waiting for a socket's
next message, so with the default an idle consumer's receive loop dies after
about five quiet seconds and the socket never hears from its room again. The
settings pass ``socket_timeout: None``; this module proves an idle socket
still gets the room's next event: 6.5 s on the Redis layer (scaled pass), and
1 s on whichever layer is configured (so the embedded pass tests something).
"""

from __future__ import annotations

import asyncio
import time
import unittest

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.test import TransactionTestCase

from channels_app.webchat.sessions import chat_session_start
from rooms.inbound import InboundMessage, process_inbound
from rooms.models import ChannelBinding
from tests.sockets.helpers import Sockets, is_event, is_type, next_frame
from tests.support import make_channel


class IdleSocketTest(TransactionTestCase):
    def setUp(self) -> None:
        self.sockets = Sockets()

    async def _idle_socket_still_receives(self, idle_seconds: float) -> None:
        session = await sync_to_async(chat_session_start)(display_name="Ann", open_now=True)

        @database_sync_to_async
        def bind_sms():
            sms = make_channel("sms-idle", channel_type="sms", secrets={"signing_secret": "s"})
            ChannelBinding.objects.create(room_id=session.room_id, channel=sms, address="+15550177")

        await bind_sms()
        try:
            ann, _ = await self.sockets.connect(session.token)
            started = time.monotonic()
            await asyncio.sleep(idle_seconds)
            self.assertTrue(await ann.receive_nothing(timeout=0.05), "an idle socket got a frame from nowhere")

            result = await database_sync_to_async(process_inbound)(
                InboundMessage(channel_id="sms-idle", sender="+15550177", text="after a quiet while", provider_message_id="i1")
            )
            frame, _ = await next_frame(ann, is_event(result.seq), timeout=5)
            self.assertGreaterEqual(time.monotonic() - started, idle_seconds)
            self.assertEqual(frame["event"]["content"]["body"], "after a quiet while")

            # The socket still works both ways.
            await ann.send_json_to({"type": "message", "text": "still here", "client_msg_id": "s1"})
            ack, _ = await next_frame(ann, is_type("ack"))
            self.assertEqual(ack["seq"], result.seq + 1)
        finally:
            await self.sockets.close_all()

    async def test_idle_socket_receives_later_event(self):
        """A short quiet spell on whichever layer is configured (in-memory by default)."""
        await self._idle_socket_still_receives(1.0)

    @unittest.skipUnless(
        settings.REDIS_URL,
        "the redis-py 8 socket_timeout trap needs the channels-redis layer: set REDIS_URL (scaled-mode pass)",
    )
    async def test_socket_idle_past_redis_socket_timeout_receives_later_event(self):
        from channels_redis.core import RedisChannelLayer

        self.assertIsInstance(get_channel_layer(), RedisChannelLayer)
        await self._idle_socket_still_receives(6.5)
