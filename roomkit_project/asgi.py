"""ASGI entry point: HTTP through Django, WebSockets through Channels consumers."""

import asyncio
import gc
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "roomkit_project.settings")
django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402

from roomkit_project.http_handler import PooledSyncASGIHandler  # noqa: E402

# Every HTTP request runs whole on one thread of a fixed pool (see the module).
django_asgi_app = PooledSyncASGIHandler(
    threads=settings.ROOMKIT_HTTP_THREADS,
    lean_prefixes=tuple(settings.ROOMKIT_LEAN_PATH_PREFIXES),
    lean_middleware=tuple(settings.ROOMKIT_LEAN_MIDDLEWARE),
)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from channels_app.staff_consumer import staff_rooms_app  # noqa: E402
from channels_app.webchat.consumer import ChatConsumer  # noqa: E402
from roomkit_project.daphne_requests import leave_form_bodies_to_django  # noqa: E402
from roomkit_project.daphne_tuning import skip_autobahn_debug_formatting  # noqa: E402
from roomkit_project.middleware import BodySizeLimitASGI  # noqa: E402
from roomkit_project.ws_origin import WebSocketOriginMiddleware  # noqa: E402
from rooms.realtime.broadcast import bind_server_loop  # noqa: E402
from voice.consumer import BrowserVoiceConsumer  # noqa: E402
from voice.twilio_consumer import TwilioMediaStreamConsumer  # noqa: E402

skip_autobahn_debug_formatting()
leave_form_bodies_to_django()

websocket_urlpatterns = [
    path("ws/chat/", ChatConsumer.as_asgi()),
    # The /voice/ page's audio (a chat session's token for a voice channel).
    path("ws/voice/", BrowserVoiceConsumer.as_asgi()),
    # Phone calls: Twilio Media Streams, opened by Twilio's servers (see the origin check below).
    path("ws/twilio/<slug:channel_id>/", TwilioMediaStreamConsumer.as_asgi()),
    # Operators' live console (Django session auth, staff only).
    path("ws/staff/rooms/", staff_rooms_app),
    path("ws/staff/rooms/<str:room_id>/", staff_rooms_app),
]

_router = ProtocolTypeRouter(
    {
        # Bodies over the limit are refused while they arrive, chunked or not.
        "http": BodySizeLimitASGI(django_asgi_app),
        # Only pages this site serves may open its sockets (cross-site
        # WebSocket hijacking); the allowed origins are read per handshake.
        # Twilio's media streams come from Twilio's servers with no Origin and
        # no cookies to hijack: they are exempt, and prove themselves instead
        # (X-Twilio-Signature on the handshake, our signed token at "start").
        "websocket": WebSocketOriginMiddleware(URLRouter(websocket_urlpatterns), exempt_prefixes=("/ws/twilio/",)),
    }
)


async def application(scope, receive, send):
    # Remember the loop that serves sockets so sync code can publish to it.
    bind_server_loop(asyncio.get_running_loop())
    return await _router(scope, receive, send)


# Everything imported at start-up lives as long as the process: move it out of
# the collector's reach so full collections (the latency tail on the socket
# path) scan only what requests create. ``manage.py serve`` goes on freezing
# what survives (roomkit_project.gc_tuning).
gc.collect()
gc.freeze()
