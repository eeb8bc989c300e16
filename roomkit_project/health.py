"""``GET /healthz``: is each moving part reachable?"""

from __future__ import annotations

import asyncio
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from rooms.http import allow_methods


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
    await asyncio.wait_for(layer.receive(channel), timeout=2)


def _check_layer() -> str:
    try:
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
