"""The operator console's action on a room's deliveries: send a failed one again.

Registered with the console by ``ChannelsAppConfig.ready()`` (``rooms.registries``).
"""

from __future__ import annotations

from typing import Any

from channels_app.services import delivery_retry
from rooms import registries
from rooms.errors import InvalidInput, NotFound
from rooms.models import Delivery


def retry_delivery(user: Any, room_id: str, params: dict[str, str]) -> str:
    try:
        delivery_id = int(params.get("delivery", ""))
    except ValueError as exc:
        raise InvalidInput("a delivery id is required", code="invalid_delivery") from exc
    if not Delivery.objects.filter(pk=delivery_id, event__room_id=room_id).exists():
        raise NotFound(f"no delivery {delivery_id} in this room", code="unknown_delivery")
    delivery_retry(delivery_id=delivery_id)
    return f"Delivery {delivery_id} queued again."


def register() -> None:
    registries.register_console_action("retry_delivery", retry_delivery)
