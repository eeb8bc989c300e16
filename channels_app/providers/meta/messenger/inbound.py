"""Messenger page webhooks read into our inbound messages and status updates.

One POST is ``{"object": "page", "entry": [{"id": <page id>, "messaging":
[event]}]}``. An event's ``sender.id`` is the customer's page-scoped id
(PSID), the address of their binding. ``message`` (text, a tapped quick
reply, attachments) and ``postback`` (a tapped button) are stored, keyed by
their ``mid``; our own messages echoed back (``is_echo``) are not.
``delivery`` and ``read`` carry a ``watermark``: every message to that
customer sent before it was delivered (read), so each of our deliveries to
them sent by then becomes a status update.

Attachments' ``payload.url`` are links to Meta's CDN that expire: each is
fetched (no credentials needed) and stored by ``channels_app.inbound_media``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from channels_app.inbound_media import fetch_message_media, message_content
from channels_app.providers.base import StatusUpdate
from channels_app.providers.meta.webhooks import str_field
from rooms.enums import DeliveryStatus
from rooms.errors import InvalidInput
from rooms.inbound import InboundMessage
from rooms.models import Channel, Delivery
from rooms.selectors import provider_message_stored

logger = logging.getLogger(__name__)

MEDIA_BUDGET_SECONDS = 10.0
_FILE_TYPES = {"image": "image/*", "video": "video/*", "audio": "audio/*", "file": ""}
# Statuses a watermark can still move a delivery from.
_BEFORE_DELIVERED = (DeliveryStatus.QUEUED, DeliveryStatus.SENT)
_BEFORE_READ = (DeliveryStatus.QUEUED, DeliveryStatus.SENT, DeliveryStatus.DELIVERED)


def read_event(channel: Channel, event: Any, raw: dict[str, Any]) -> tuple[InboundMessage | None, list[StatusUpdate]]:
    """One ``messaging[]`` event: a message to store, status updates, or neither."""
    if not isinstance(event, dict):
        raise InvalidInput("each 'messaging' item must be an object", code="invalid_field")
    sender = event.get("sender")
    psid = str_field(sender if isinstance(sender, dict) else {}, "id", "sender")
    if isinstance(event.get("message"), dict):
        return _message(channel, psid, event["message"], raw), []
    if isinstance(event.get("postback"), dict):
        return _postback(channel, psid, event, raw), []
    if isinstance(event.get("delivery"), dict):
        return None, watermark_updates(channel, psid, event["delivery"], DeliveryStatus.DELIVERED, raw)
    if isinstance(event.get("read"), dict):
        return None, watermark_updates(channel, psid, event["read"], DeliveryStatus.READ, raw)
    return None, []


def _message(channel: Channel, psid: str, message: dict[str, Any], raw: dict[str, Any]) -> InboundMessage | None:
    if message.get("is_echo"):
        # What the page sent (by us or by someone in the page inbox) coming back: not the customer's.
        return None
    mid = str_field(message, "mid", "message")
    text = message.get("text") if isinstance(message.get("text"), str) else ""
    metadata: dict[str, Any] = {"raw": raw}
    quick_reply = message.get("quick_reply")
    if isinstance(quick_reply, dict):
        metadata["reply"] = {"kind": "quick_reply", "id": str(quick_reply.get("payload") or ""), "title": text}
    attachments = message.get("attachments")
    if attachments is not None and not isinstance(attachments, list):
        raise InvalidInput("'message.attachments' must be a list", code="invalid_field")
    parts: list[dict[str, Any]] = []
    fetch: list[tuple[str, str]] = []
    for attachment in attachments or []:
        if not isinstance(attachment, dict):
            raise InvalidInput("each attachment must be an object", code="invalid_field")
        kind = attachment.get("type")
        payload = attachment.get("payload") if isinstance(attachment.get("payload"), dict) else {}
        coordinates = payload.get("coordinates")
        if kind == "location" and isinstance(coordinates, dict):
            lat, lng = coordinates.get("lat"), coordinates.get("long")
            if isinstance(lat, (int, float)) and isinstance(lng, (int, float)):
                parts.append({"type": "location", "latitude": lat, "longitude": lng})
        elif kind in _FILE_TYPES and isinstance(payload.get("url"), str):
            fetch.append((payload["url"], _FILE_TYPES[kind]))
        elif isinstance(payload.get("url"), str):
            # "fallback" (a shared link) and "template": the link is the content.
            parts.append({"type": "text", "body": str(attachment.get("title") or "") + " " + payload["url"]})
    if fetch:
        if provider_message_stored(channel_id=channel.id, provider_message_id=mid):
            parts.append({"type": "text", "body": "[attachment]"})  # a repeat: valid content, nothing fetched
        else:
            fetched, errors = fetch_message_media(fetch, vendor="messenger", budget=MEDIA_BUDGET_SECONDS)
            for error in errors:
                logger.warning("messenger attachment %s of %s not stored: %s", error["index"], mid, error["error"])
            if errors:
                metadata["media_errors"] = errors
            parts.extend(fetched)
    content = message_content(text, parts)
    if content is None:
        logger.info("messenger %s: message %s has nothing we store", channel.id, mid)
        return None
    return InboundMessage(channel_id=channel.id, sender=psid, content=content, provider_message_id=mid, metadata=metadata)


def _postback(channel: Channel, psid: str, event: dict[str, Any], raw: dict[str, Any]) -> InboundMessage:
    postback = event["postback"]
    title = str_field(postback, "title", "postback")
    # Postbacks carry a mid on current versions; an older one is keyed by who tapped and when.
    mid = postback.get("mid") if isinstance(postback.get("mid"), str) and postback["mid"] else None
    key = mid or f"postback:{psid}:{event.get('timestamp')}"
    metadata = {"raw": raw, "reply": {"kind": "postback", "id": str(postback.get("payload") or ""), "title": title}}
    return InboundMessage(
        channel_id=channel.id, sender=psid, content={"type": "text", "body": title}, provider_message_id=key, metadata=metadata
    )


def watermark_updates(channel: Channel, psid: str, data: dict[str, Any], status: str, raw: dict[str, Any]) -> list[StatusUpdate]:
    """Every delivery to ``psid`` on this channel sent at or before the ``watermark`` (ms since the epoch), as ``status``."""
    watermark = data.get("watermark")
    if not isinstance(watermark, (int, float)) or isinstance(watermark, bool) or watermark <= 0:
        raise InvalidInput("'watermark' must be a positive number", code="invalid_field")
    until = datetime.fromtimestamp(watermark / 1000, tz=UTC)
    earlier = _BEFORE_READ if status == DeliveryStatus.READ else _BEFORE_DELIVERED
    ids = (
        Delivery.objects.filter(channel=channel, recipient=psid, sent_at__lte=until, status__in=earlier)
        .exclude(provider_message_id="")
        .values_list("provider_message_id", flat=True)
    )
    return [StatusUpdate(provider_message_id=pmid, status=status, raw=raw) for pmid in ids]
