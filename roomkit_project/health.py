"""``GET /healthz``: is each moving part reachable?

The channel layer is judged by whether it works, not by how busy it is. On
Redis: a PING of each server, then a message sent and received on a channel
of its own (not a process-local one: those share the process's inbox with
every room's frames, so a backlog would make a working layer look down),
from a loop of its own (not the one serving sockets, which may be busy
relaying). A layer that answers within ``LAYER_TIMEOUT_SECONDS`` is up.
"""

from __future__ import annotations

import asyncio
import threading
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from rooms.infra.http import allow_methods

LAYER_TIMEOUT_SECONDS = 2.0


def _check_db() -> str:
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchone()
        return "ok"
    except Exception as exc:  # any failure means down; say which
        return f"down: {type(exc).__name__}"


async def _layer_roundtrip() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "health.ping", "nonce": uuid.uuid4().hex})
    await asyncio.wait_for(layer.receive(channel), timeout=LAYER_TIMEOUT_SECONDS)


async def _redis_layer_works(layer: RedisChannelLayer) -> None:
    for index in range(layer.ring_size):
        await layer.connection(index).ping()
    # A general channel (no "!"): a key of its own, received directly.
    channel = f"roomkit.health.{uuid.uuid4().hex}"
    nonce = uuid.uuid4().hex
    await layer.send(channel, {"type": "health.ping", "nonce": nonce})
    message = await layer.receive(channel)
    if message.get("nonce") != nonce:
        raise RuntimeError("the layer returned another message")


_health_loop: asyncio.AbstractEventLoop | None = None
_health_loop_lock = threading.Lock()


def _loop() -> asyncio.AbstractEventLoop:
    """This process's health-check loop (one thread, one Redis pool), started on first use."""
    global _health_loop
    with _health_loop_lock:
        if _health_loop is None or _health_loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="roomkit-health", daemon=True).start()
            _health_loop = loop
    return _health_loop


def _check_layer() -> str:
    try:
        layer = get_channel_layer()
        if isinstance(layer, RedisChannelLayer):
            check = asyncio.wait_for(_redis_layer_works(layer), timeout=LAYER_TIMEOUT_SECONDS)
            asyncio.run_coroutine_threadsafe(check, _loop()).result(LAYER_TIMEOUT_SECONDS + 1)
        else:
            async_to_sync(_layer_roundtrip)()
        return "ok"
    except Exception as exc:
        return f"down: {type(exc).__name__}"


def _check_broker() -> str:
    if settings.ROOMKIT_TASK_MODE != "celery":
        return "in-process"
    try:
        import redis

        redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2, socket_connect_timeout=2).ping()
        return "ok"
    except Exception as exc:
        return f"down: {type(exc).__name__}"


@allow_methods("GET")
def healthz(request: HttpRequest) -> JsonResponse:
    report = {"db": _check_db(), "channel_layer": _check_layer(), "broker": _check_broker()}
    healthy = all(v in ("ok", "in-process") for v in report.values())
    if not healthy:
        report["down"] = [k for k, v in report.items() if v not in ("ok", "in-process")]
    return JsonResponse(report, status=200 if healthy else 503)
