"""``/healthz`` judges the channel layer by whether it works: 200 while it is busy, 503 only when it is down.

Busy: this process's inbox holds a backlog of room traffic (tens of
thousands of frames its room hubs have not read yet), as after a burst of
streamed AI replies. The old check sent its ping through that same inbox and
timed out behind the backlog, so a balancer would have pulled a working node.
"""

from __future__ import annotations

import time
import unittest

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.test import TestCase, override_settings

from roomkit_project.health import LAYER_TIMEOUT_SECONDS

BACKLOG = 30_000


async def _fill_inbox(count: int) -> str:
    """Queue ``count`` messages for a process-local channel nobody reads: this process's inbox backlog."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    if hasattr(layer, "connection"):  # Redis: the layer's own serialized messages, written in one pipeline
        key = layer.prefix + layer.non_local_name(channel)
        connection = layer.connection(layer.consistent_hash(channel))
        pipe = connection.pipeline()
        now = time.time()
        for i in range(count):
            pipe.zadd(
                key, {layer.serialize({"type": "room.frame", "text": "x" * 200, "__asgi_channel__": channel}): now + i * 1e-6}
            )
        pipe.expire(key, 60)
        await pipe.execute()
    else:
        for _ in range(count):
            await layer.send(channel, {"type": "room.frame", "text": "x" * 200})
    return channel


class LayerHealthTest(TestCase):
    @unittest.skipUnless(settings.REDIS_URL, "the shared per-process inbox is the Redis layer's: set REDIS_URL")
    def test_a_backlog_in_the_process_inbox_is_busy_not_down(self):
        async_to_sync(_fill_inbox)(BACKLOG)
        started = time.monotonic()
        r = self.client.get("/healthz")
        took = time.monotonic() - started
        self.assertEqual(r.status_code, 200, r.content)
        self.assertEqual(r.json()["channel_layer"], "ok")
        self.assertLess(took, LAYER_TIMEOUT_SECONDS)

    def test_busy_in_memory_layer_is_ok(self):
        async_to_sync(_fill_inbox)(2_000)
        r = self.client.get("/healthz")
        self.assertEqual(r.status_code, 200, r.content)

    @override_settings(
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": "rooms.realtime.channel_layer.RoomKitRedisChannelLayer",
                "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:1/0", "socket_timeout": None}]},
            }
        }
    )
    def test_an_unreachable_redis_is_down(self):
        started = time.monotonic()
        r = self.client.get("/healthz")
        self.assertEqual(r.status_code, 503, r.content)
        body = r.json()
        self.assertEqual(body["down"], ["channel_layer"])
        self.assertTrue(body["channel_layer"].startswith("down: "), body)
        self.assertLess(time.monotonic() - started, LAYER_TIMEOUT_SECONDS + 1.5)
