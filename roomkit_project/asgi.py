"""ASGI entry point: HTTP through Django, WebSockets through Channels consumers."""

import asyncio
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "roomkit_project.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from channels_app.consumers import ChatConsumer  # noqa: E402
from rooms.realtime import bind_server_loop  # noqa: E402

websocket_urlpatterns = [
    path("ws/chat/", ChatConsumer.as_asgi()),
]

_router = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Origin check against ALLOWED_HOSTS: a page on another site cannot
        # open a socket with the visitor's token (cross-site WS hijacking).
        "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
    }
)


async def application(scope, receive, send):
    # Remember the loop that serves sockets so sync code can publish to it.
    bind_server_loop(asyncio.get_running_loop())
    return await _router(scope, receive, send)
