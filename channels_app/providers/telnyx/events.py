"""Telnyx webhook events (API v2 JSON) read into our inbound messages and status updates.

Every Telnyx messaging webhook is ``{"data": {"event_type", "id", "payload"},
"meta"}``. ``message.received`` carries an inbound SMS/MMS (``payload.text``,
``payload.media[]``) or RCS message (``payload.body`` in the snake-case form
of Google's RCS schema); ``message.sent``, ``message.finalized`` and, for RCS,
``message.read`` report on a message we sent, whose id is ``payload.id`` and
whose recipient's status is ``payload.to[0].status``.

MMS media (``payload.media[].url``) are links to Telnyx's media store that
expire: each is fetched (Telnyx's links need no credentials) and stored by
``channels_app.inbound_media`` while the webhook is answered, so the event
keeps the file, not the link.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from channels_app.inbound_media import fetch_message_media, message_content
from channels_app.providers.base import StatusUpdate
from channels_app.providers.http import content_from_payload
from rooms.enums import ChannelType, DeliveryStatus
from rooms.errors import InvalidInput
from rooms.inbound import InboundMessage
from rooms.infra.http import json_object_body
from rooms.models import Channel
from rooms.selectors import provider_message_stored

logger = logging.getLogger(__name__)

MESSAGE_RECEIVED = "message.received"
MESSAGE_SENT = "message.sent"
MESSAGE_FINALIZED = "message.finalized"
# RCS read receipts.
MESSAGE_READ = "message.read"
STATUS_EVENTS = frozenset({MESSAGE_SENT, MESSAGE_FINALIZED, MESSAGE_READ})

# A recipient's status (``payload.to[].status``) as a DeliveryStatus.
# "sending": Telnyx is handing it to the carrier, still ours to count as
# queued. "delivery_unconfirmed": the carrier took it but sent no receipt, so
# it is sent and no more. "delivery_failed" and "expired": the carrier's final
# word that it did not arrive. "sending_failed": Telnyx could not send it.
VENDOR_STATUSES: dict[str, str] = {
    "queued": DeliveryStatus.QUEUED,
    "sending": DeliveryStatus.QUEUED,
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "delivery_unconfirmed": DeliveryStatus.SENT,
    "delivery_failed": DeliveryStatus.UNDELIVERED,
    "expired": DeliveryStatus.UNDELIVERED,
    "sending_failed": DeliveryStatus.FAILED,
}
_BEFORE_SENT = frozenset({DeliveryStatus.QUEUED})

# How long one message's attachments may take to fetch. Telnyx asks for an
# answer within 2 seconds and retries a later one; a retry of a stored message
# is a duplicate that fetches nothing, so a slow attachment costs a retry,
# where giving up on it would lose it for good once its link expires.
MEDIA_BUDGET_SECONDS = 10.0


@dataclass(frozen=True)
class TelnyxEvent:
    """One webhook: its type, its ``data.payload`` and the whole body as received (kept as the event's ``raw``)."""

    event_type: str
    payload: dict[str, Any]
    raw: dict[str, Any]


def parse_event(request: HttpRequest) -> TelnyxEvent:
    """The request's Telnyx event; InvalidInput (a 4xx, nothing stored) when it is not one."""
    body = json_object_body(request)
    data = body.get("data")
    if not isinstance(data, dict):
        raise InvalidInput("'data' must be an object", code="invalid_field")
    event_type = data.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise InvalidInput("'data.event_type' is required", code="missing_field")
    payload = data.get("payload")
    if not isinstance(payload, dict):
        raise InvalidInput("'data.payload' must be an object", code="invalid_field")
    return TelnyxEvent(event_type, payload, body)


def _message_id(payload: dict[str, Any]) -> str:
    message_id = payload.get("id")
    if not isinstance(message_id, str) or not message_id.strip():
        raise InvalidInput("'data.payload.id' is required", code="missing_field")
    return message_id.strip()


def inbound_message(channel: Channel, event: TelnyxEvent) -> InboundMessage:
    """A ``message.received`` event as our inbound message, deduplicated on Telnyx's message id.

    MMS media are fetched and stored (``_sms_content``); one that cannot be
    is a text part saying so, noted in the metadata's ``media_errors``.
    """
    payload = event.payload
    message_id = _message_id(payload)
    sender = payload.get("from")
    phone = sender.get("phone_number") if isinstance(sender, dict) else None
    if not isinstance(phone, str) or not phone.strip():
        raise InvalidInput("'data.payload.from.phone_number' is required", code="missing_field")
    metadata: dict[str, Any] = {"raw": event.raw}
    body = payload.get("body")
    if isinstance(body, dict):
        content = _rcs_content(body, metadata)
    else:
        content = _sms_content(channel, message_id, payload, metadata)
    return InboundMessage(
        channel_id=channel.id,
        sender=phone.strip(),
        content=content,
        provider_message_id=message_id,
        metadata=metadata,
    )


def _sms_content(channel: Channel, message_id: str, payload: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    text = payload.get("text")
    if text is not None and not isinstance(text, str):
        raise InvalidInput("'data.payload.text' must be a string", code="invalid_field")
    media = payload.get("media")
    if media is not None and not isinstance(media, list):
        raise InvalidInput("'data.payload.media' must be a list", code="invalid_field")
    items: list[tuple[str, str]] = []
    for item in media or []:
        if not isinstance(item, dict) or not isinstance(item.get("url"), str) or not item["url"]:
            raise InvalidInput("each 'data.payload.media' item needs a 'url'", code="invalid_field")
        # The API reference names it content_type; Telnyx's own examples also show "type".
        declared = item.get("content_type") or item.get("type")
        items.append((item["url"], declared if isinstance(declared, str) else ""))
    if not items:
        return content_from_payload(text or None, None)
    if provider_message_stored(channel_id=channel.id, provider_message_id=message_id):
        # A repeat stores nothing new; its content only has to be valid.
        return {"type": "text", "body": text or "[media]"}
    parts, errors = fetch_message_media(items, vendor="telnyx", budget=MEDIA_BUDGET_SECONDS)
    for error in errors:
        logger.warning("telnyx media %s of %s not stored: %s", error["index"], message_id, error["error"])
    if errors:
        metadata["media_errors"] = errors
    content = message_content(text or "", parts)
    assert content is not None  # every item is a part, fetched or noted as lost
    return content


def _rcs_content(body: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    """An RCS message body (text, a file, a location or a tapped suggestion) as typed content."""
    suggestion = body.get("suggestion_response")
    if isinstance(suggestion, dict):
        postback = suggestion.get("postback_data")
        if isinstance(postback, str) and postback:
            metadata["postback_data"] = _decode_postback(postback)
        label = suggestion.get("text")
        if isinstance(label, str) and label.strip():
            return {"type": "text", "body": label}
        raise InvalidInput("'body.suggestion_response.text' is required", code="missing_field")
    location = body.get("location")
    if isinstance(location, dict):
        latitude, longitude = location.get("latitude"), location.get("longitude")
        if isinstance(latitude, (int, float)) and isinstance(longitude, (int, float)):
            return {"type": "location", "latitude": latitude, "longitude": longitude}
        raise InvalidInput("'body.location' needs a numeric 'latitude' and 'longitude'", code="invalid_field")
    user_file = body.get("user_file")
    if isinstance(user_file, dict):
        # Google's UserFile: {"payload": {"mime_type", "file_size_bytes", "file_uri", "file_name"}, "thumbnail": …}.
        file = user_file.get("payload") if isinstance(user_file.get("payload"), dict) else user_file
        url = file.get("file_uri")
        if not isinstance(url, str) or not url:
            raise InvalidInput("'body.user_file.payload.file_uri' is required", code="missing_field")
        content: dict[str, Any] = {
            "type": "media",
            "url": url,
            "mime_type": str(file.get("mime_type") or "application/octet-stream"),
        }
        if isinstance(file.get("file_name"), str) and file["file_name"]:
            content["filename"] = file["file_name"]
        if isinstance(file.get("file_size_bytes"), int) and file["file_size_bytes"] >= 0:
            content["size"] = file["file_size_bytes"]
        return content
    text = body.get("text")
    if isinstance(text, str) and text.strip():
        return {"type": "text", "body": text}
    raise InvalidInput("the RCS 'body' has no text, file, location or suggestion response", code="missing_field")


def _decode_postback(value: str) -> str:
    """Telnyx documents postback data as base64; what we sent was base64 of our payload, so read it back when it is."""
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return value


def status_update(channel: Channel, event: TelnyxEvent) -> StatusUpdate | None:
    """A status event as a StatusUpdate for the delivery with that Telnyx message id; None if it says nothing we track."""
    payload = event.payload
    message_id = _message_id(payload)
    recipients = payload.get("to")
    first = recipients[0] if isinstance(recipients, list) and recipients and isinstance(recipients[0], dict) else {}
    vendor_status = first.get("status")
    if event.event_type == MESSAGE_READ:
        status = DeliveryStatus.READ
    else:
        status = VENDOR_STATUSES.get(vendor_status) if isinstance(vendor_status, str) else None
        if event.event_type == MESSAGE_SENT and (status is None or status in _BEFORE_SENT):
            # The event itself says it left Telnyx for the carrier (its documented example still reads "queued").
            status = DeliveryStatus.SENT
    if status is None:
        return None
    error, error_code = first_error(payload.get("errors"))
    return StatusUpdate(
        provider_message_id=message_id,
        status=status,
        error=error,
        raw=event.raw,
        error_code=error_code,
        sent_as=sent_as_of(channel, payload.get("type")),
    )


def first_error(errors: Any) -> tuple[str, str]:
    """``(text, code)`` of the first entry of a Telnyx ``errors`` list; empty strings when there is none."""
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return "", ""
    error = errors[0]
    code = error.get("code")
    code_text = str(code) if isinstance(code, (str, int)) and not isinstance(code, bool) else ""
    parts = [error[k] for k in ("title", "detail") if isinstance(error.get(k), str) and error[k]]
    parts = list(dict.fromkeys(parts))  # a detail that repeats the title is said once
    text = ": ".join(parts) or "error"
    return (f"{code_text} {text}" if code_text else text), code_text


def sent_as_of(channel: Channel, message_type: Any) -> str:
    """How an RCS channel's message went ("rcs" or, after Telnyx's fallback, "sms"); empty for SMS channels."""
    if channel.channel_type != ChannelType.RCS or not isinstance(message_type, str):
        return ""
    kind = message_type.upper()
    if kind == "RCS":
        return "rcs"
    if kind in ("SMS", "MMS"):
        return "sms"
    return ""
