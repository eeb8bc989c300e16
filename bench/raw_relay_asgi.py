"""The baseline for ``bench/ws_fanout.py``: a minimal Django Channels ``group_send`` relay.

Stock parts only: ``AsyncJsonWebsocketConsumer``, Channels' own
``InMemoryChannelLayer``, Daphne. Every socket joins one group; a frame
from any socket is ``group_send``-ed to all of them and each consumer sends
it back out with ``send_json``. This is what a Channels tutorial builds.

Serve: ``python -m daphne -b 127.0.0.1 -p PORT bench.raw_relay_asgi:application``
(from the project root).
"""

from __future__ import annotations

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="raw-relay-bench",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["channels"],
        DATABASES={},
        CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
        USE_TZ=True,
    )
    django.setup()

from channels.generic.websocket import AsyncJsonWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

GROUP = "relay"


class RelayConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        await self.channel_layer.group_send(GROUP, {"type": "relay.message", "payload": content})

    async def relay_message(self, event) -> None:
        await self.send_json(event["payload"])


application = ProtocolTypeRouter({"websocket": URLRouter([path("ws/relay/", RelayConsumer.as_asgi())])})
