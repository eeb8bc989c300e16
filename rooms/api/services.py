"""What the REST API writes: messages posted by integrators, through the inbound path."""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings

from rooms.enums import ChannelType
from rooms.inbound import InboundMessage, InboundResult, process_inbound
from rooms.services import ensure_system_channel


def api_message_post(
    *, user: Any, room_id: str, text: str, sender: str | None = None, idempotency_key: str | None = None
) -> InboundResult:
    """Post ``text`` into the room as the token's ``user`` (or as ``sender``, a name the integrator gives).

    Every integrator posts through the one API channel; each is its own sender
    there, and its idempotency keys are its own (``api_idempotency_key``).
    """
    ensure_system_channel(settings.ROOMKIT_API_CHANNEL_ID, ChannelType.API, "REST API")
    name = sender or user.get_username()
    return process_inbound(
        InboundMessage(
            channel_id=settings.ROOMKIT_API_CHANNEL_ID,
            room_id=room_id,
            sender=f"api:{user.pk}:{name}"[:255],
            display_name=name,
            text=text,
            idempotency_key=api_idempotency_key(user.pk, idempotency_key),
        )
    )


def api_idempotency_key(user_pk: Any, key: str | None) -> str | None:
    """The idempotency key as stored: scoped to the token's user.

    Every integrator posts through the one API channel, where keys are unique;
    unscoped, one integrator's key "1" would swallow another's message as a
    duplicate. An empty key is no key. Long keys are hashed to fit the column.
    """
    if not key:
        return None
    scoped = f"{user_pk}:{key}"
    if len(scoped) > 255:
        scoped = f"{user_pk}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"
    return scoped
