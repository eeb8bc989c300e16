"""neonize's events read into ours: a received message as an ``InboundMessage``, receipts as status updates.

The objects are neonize's own protobufs (``neonize.proto.Neonize_pb2``): a
``Message`` event carries ``Info`` (who, which chat, WhatsApp's message id)
and ``Message`` (WhatsApp's ``waE2E.Message``, one of ``conversation``,
``extendedTextMessage``, ``imageMessage``…). Media are not links but
end-to-end encrypted blobs: only the client can download and decrypt them, so
they are fetched through it and stored the way vendor media are
(``channels_app.inbound_media.store_inbound_media``), typed by their bytes.

A one-to-one chat's JID (``Info.MessageSource.Chat``) is the sender's
address: it is where the answer goes. Group chats, status updates and the
account's own messages (sent from the phone) are not conversations with a
customer and are ignored.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from neonize.proto import Neonize_pb2 as neonize_proto
from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as wa

from channels_app.inbound_media import MAX_CAPTION, message_content, store_inbound_media
from channels_app.providers.base import StatusUpdate
from channels_app.providers.neonize.client import WhatsAppClient, jid_to_str
from rooms.enums import DeliveryStatus
from rooms.inbound import InboundMessage
from rooms.selectors import provider_message_stored

logger = logging.getLogger(__name__)

VENDOR = "neonize"
STATUS_BROADCAST = "status@broadcast"

# A receipt for our message, as a delivery status. "PLAYED" is a voice note listened to: read.
RECEIPT_STATUSES: dict[int, str] = {
    neonize_proto.Receipt.DELIVERED: DeliveryStatus.DELIVERED,
    neonize_proto.Receipt.READ: DeliveryStatus.READ,
    neonize_proto.Receipt.PLAYED: DeliveryStatus.READ,
}

# waE2E.Message fields that carry a downloadable file, with what the file is.
_MEDIA_FIELDS = ("imageMessage", "videoMessage", "documentMessage", "stickerMessage", "audioMessage")


def is_customer_message(event: neonize_proto.Message) -> bool:
    """A message from someone else in a one-to-one chat (not a group, a status, or our own)."""
    source = event.Info.MessageSource
    return not source.IsFromMe and not source.IsGroup and jid_to_str(source.Chat) != STATUS_BROADCAST


def inbound_message(*, channel_id: str, event: neonize_proto.Message, client: WhatsAppClient) -> InboundMessage | None:
    """The event as our inbound message (deduplicated on WhatsApp's message id); None for what we do not store."""
    if not is_customer_message(event) or not event.Info.ID:
        return None
    message = event.Message
    # Disappearing-mode and view-once messages wrap the real one.
    for wrapper in ("ephemeralMessage", "viewOnceMessage", "viewOnceMessageV2", "documentWithCaptionMessage"):
        if message.HasField(wrapper) and getattr(message, wrapper).HasField("message"):
            message = getattr(message, wrapper).message
    source = event.Info.MessageSource
    message_id = event.Info.ID
    metadata: dict[str, Any] = {
        "whatsapp": {
            "chat": jid_to_str(source.Chat),
            "sender": jid_to_str(source.Sender),
            "timestamp": event.Info.Timestamp,
            "type": event.Info.Type,
        }
    }
    if source.HasField("SenderAlt") and source.SenderAlt.User:
        metadata["whatsapp"]["sender_alt"] = jid_to_str(source.SenderAlt)
    content = _content(channel_id, message_id, message, client, metadata)
    if content is None:
        return None
    return InboundMessage(
        channel_id=channel_id,
        sender=jid_to_str(source.Chat),
        content=content,
        provider_message_id=message_id,
        display_name=event.Info.Pushname or None,
        metadata=metadata,
    )


def _content(
    channel_id: str, message_id: str, message: wa.Message, client: WhatsAppClient, metadata: dict[str, Any]
) -> dict[str, Any] | None:
    if message.conversation:
        return {"type": "text", "body": message.conversation}
    if message.HasField("extendedTextMessage") and message.extendedTextMessage.text:
        return {"type": "text", "body": message.extendedTextMessage.text}
    for name in ("locationMessage", "liveLocationMessage"):
        if message.HasField(name):
            return _location(getattr(message, name))
    for name in _MEDIA_FIELDS:
        if message.HasField(name):
            return _media(channel_id, message_id, name, message, client, metadata)
    return None


def _location(location: wa.LocationMessage | wa.LiveLocationMessage) -> dict[str, Any] | None:
    latitude, longitude = location.degreesLatitude, location.degreesLongitude
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    content: dict[str, Any] = {"type": "location", "latitude": latitude, "longitude": longitude}
    for ours, theirs in (("label", "name"), ("address", "address")):
        value = getattr(location, theirs, "")
        if value:
            content[ours] = value[:500]
    return content


def _media(
    channel_id: str, message_id: str, field: str, message: wa.Message, client: WhatsAppClient, metadata: dict[str, Any]
) -> dict[str, Any]:
    media = getattr(message, field)
    caption = getattr(media, "caption", "")[:MAX_CAPTION]
    label = (media.mimetype or field.removesuffix("Message")).split(";", 1)[0].strip()
    if provider_message_stored(channel_id=channel_id, provider_message_id=message_id):
        # A repeat stores nothing new; its content only has to be valid, and nothing is downloaded twice.
        return {"type": "text", "body": caption or f"[{label}]"}
    limit = settings.ROOMKIT_MAX_UPLOAD_BYTES
    try:
        if media.fileLength and media.fileLength > limit:
            raise _Lost("too_large")
        try:
            data = client.download(message)
        except Exception as exc:  # the vendor's client raises its own errors for expired or missing media
            logger.warning("whatsapp_personal media of %s not downloaded: %s", message_id, type(exc).__name__)
            raise _Lost("download_failed") from None
        if not data:
            raise _Lost("empty")
        if len(data) > limit:
            raise _Lost("too_large")
    except _Lost as lost:
        metadata["media_errors"] = [{"index": "0", "error": lost.reason, "declared_type": label[:127]}]
        return message_content(caption, [{"type": "text", "body": f"[{label} could not be retrieved]"}]) or {}
    stored = store_inbound_media(data, vendor=VENDOR, declared_type=media.mimetype)
    if field == "audioMessage":
        audio: dict[str, Any] = {"type": "audio", "url": stored.url, "mime_type": stored.mime_type}
        if media.seconds:
            audio["duration_ms"] = media.seconds * 1000
        if media.PTT:
            metadata["whatsapp"]["voice_note"] = True
        return audio
    part = stored.as_content()
    if field == "documentMessage" and media.fileName:
        part["filename"] = media.fileName[:255]
    return message_content(caption, [part]) or part


class _Lost(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def status_updates(event: neonize_proto.Receipt) -> list[StatusUpdate]:
    """A receipt from the customer for messages we sent, one update per message id; others (our own devices') none."""
    status = RECEIPT_STATUSES.get(event.Type)
    if status is None or event.MessageSource.IsFromMe:
        return []
    return [StatusUpdate(provider_message_id=mid, status=status) for mid in event.MessageIDs if mid]


def is_typing(event: neonize_proto.ChatPresence) -> bool:
    return event.State == neonize_proto.ChatPresence.COMPOSING
