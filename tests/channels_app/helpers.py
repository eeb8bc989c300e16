"""Assertions shared by the edge tests (webhooks, deliveries, API, commands).

Everything here reads rows or responses; nothing of ours is replaced.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from django.http import HttpResponse
from django.test import SimpleTestCase, override_settings
from django.utils import timezone

from channels_app.services import sweep_outbox
from rooms.enums import DeliveryStatus
from rooms.models import ChannelBinding, Delivery, Participant, Room, RoomEvent

_COUNTED = (Room, RoomEvent, Participant, ChannelBinding, Delivery)


def row_counts() -> dict[str, int]:
    """How many rows each room table holds: compare before and after a refused request."""
    return {model.__name__: model.objects.count() for model in _COUNTED}


def use_temporary_media_root(test: SimpleTestCase, *, public_base_url: str) -> Path:
    """Files stored during ``test`` land in a fresh directory, removed after it, and are served under ``public_base_url``."""
    media_root = tempfile.TemporaryDirectory()
    test.addCleanup(media_root.cleanup)
    override = override_settings(MEDIA_ROOT=media_root.name, PUBLIC_BASE_URL=public_base_url)
    override.enable()
    test.addCleanup(override.disable)
    return Path(media_root.name)


def error_of(test: SimpleTestCase, response: HttpResponse, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert the contract's error shape ``{"error": {"code", "message"}}`` and return the inner object."""
    test.assertEqual(response.status_code, status, response.content[:500])
    test.assertTrue(response["Content-Type"].startswith("application/json"), response["Content-Type"])
    body = response.json()
    test.assertEqual(set(body), {"error"}, body)
    test.assertEqual(set(body["error"]), {"code", "message"}, body)
    test.assertTrue(body["error"]["code"] and isinstance(body["error"]["code"], str), body)
    test.assertTrue(body["error"]["message"] and isinstance(body["error"]["message"], str), body)
    if code is not None:
        test.assertEqual(body["error"]["code"], code, body)
    return body["error"]


def run_until_settled(delivery_id: int, *, timeout: float = 5.0) -> Delivery:
    """Let real time pass until the delivery is due, sweep, repeat until it leaves 'pending'.

    The sweeper is what sends retries in tests (inline task mode leaves
    countdowns to it), exactly as beat runs it in production.
    """
    deadline = time.monotonic() + timeout
    while True:
        delivery = Delivery.objects.get(pk=delivery_id)
        if delivery.status != DeliveryStatus.PENDING:
            return delivery
        if time.monotonic() > deadline:
            raise AssertionError(f"delivery {delivery_id} still pending after {timeout}s: {delivery.last_error}")
        if delivery.next_attempt_at is not None:
            wait = (delivery.next_attempt_at - timezone.now()).total_seconds()
            if wait > 0:
                time.sleep(wait + 0.01)
        sweep_outbox()
