"""WhatsApp Cloud API webhooks read into our inbound messages and status updates.

One POST is ``{"object": "whatsapp_business_account", "entry": [{"changes":
[{"field": "messages", "value": {...}}]}]}``; a ``value`` holds ``messages``
(from customers) and/or ``statuses`` (of messages we sent), and the
``metadata.phone_number_id`` they concern: one app's webhook serves every
number of its WhatsApp accounts, so a change for another number is not ours
and is left alone.

Message types, as the core's content kinds: ``text`` → text; ``image``,
``video``, ``document``, ``sticker`` → media, ``audio`` (voice notes) →
audio, each downloaded through the Graph media endpoint and stored
(``media.py``); ``location`` → location; ``contacts`` → text naming them
(the vCard-like objects kept in metadata); ``interactive`` button and list
replies and template quick-reply ``button`` taps → their title as text, the
id or payload in metadata; ``reaction`` → a ``reaction`` event whose text is
the emoji. The ``wamid`` is the message's provider id (the dedup key).
"""

from __future__ import annotations

import logging
from typing import Any

from channels_app.inbound_media import message_content
from channels_app.providers.base import StatusUpdate
from channels_app.providers.meta.graph import graph_error
from channels_app.providers.meta.webhooks import str_field
from channels_app.providers.meta.whatsapp import media
from rooms.enums import DeliveryStatus, EventType
from rooms.errors import InvalidInput
from rooms.inbound import InboundMessage
from rooms.models import Channel, RoomEvent
from rooms.selectors import provider_message_stored

logger = logging.getLogger(__name__)

# WhatsApp's statuses as ours; "deleted" and "warning" say nothing about delivery.
VENDOR_STATUSES: dict[str, str] = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "failed": DeliveryStatus.FAILED,
}
MEDIA_TYPES = frozenset({"image", "video", "audio", "document", "sticker"})


def read_change(channel: Channel, value: dict[str, Any], raw: dict[str, Any]) -> tuple[list[InboundMessage], list[StatusUpdate]]:
    """One ``changes[].value`` of the ``messages`` field: its messages and status updates."""
    names = _profile_names(value.get("contacts"))
    messages_in = value.get("messages", [])
    statuses_in = value.get("statuses", [])
    if not isinstance(messages_in, list) or not isinstance(statuses_in, list):
        raise InvalidInput("'messages' and 'statuses' must be lists", code="invalid_field")
    messages = [m for m in (inbound_message(channel, item, names, raw) for item in messages_in) if m is not None]
    updates = [u for u in (status_update(item, raw) for item in statuses_in) if u is not None]
    return messages, updates


def _profile_names(contacts: Any) -> dict[str, str]:
    names: dict[str, str] = {}
    for contact in contacts if isinstance(contacts, list) else []:
        if isinstance(contact, dict) and isinstance(contact.get("wa_id"), str):
            profile = contact.get("profile")
            name = profile.get("name") if isinstance(profile, dict) else None
            if isinstance(name, str) and name.strip():
                names[contact["wa_id"]] = name.strip()
    return names


def inbound_message(channel: Channel, item: Any, names: dict[str, str], raw: dict[str, Any]) -> InboundMessage | None:
    """One ``messages[]`` item as our message; None for a type we do not store (logged)."""
    if not isinstance(item, dict):
        raise InvalidInput("each 'messages' item must be an object", code="invalid_field")
    wamid = str_field(item, "id", "messages[]")
    sender = str_field(item, "from", "messages[]")
    kind = str_field(item, "type", "messages[]")
    metadata: dict[str, Any] = {"raw": raw, "whatsapp_type": kind}
    context = item.get("context")
    if isinstance(context, dict) and isinstance(context.get("id"), str):
        metadata["in_reply_to"] = context["id"]
    event_type = EventType.MESSAGE
    if kind == "text":
        content = _text(item)
    elif kind in MEDIA_TYPES:
        content = _media(channel, wamid, kind, item, metadata)
    elif kind == "location":
        content = _location(item)
    elif kind == "contacts":
        content = _contacts(item, metadata)
    elif kind == "interactive":
        content = _interactive(item, metadata)
    elif kind == "button":
        content = _template_button(item, metadata)
    elif kind == "reaction":
        event_type = EventType.REACTION
        content = _reaction(channel, item, metadata)
    else:
        # "unsupported", "system", "order"…: acknowledged (Meta retries anything else) and not stored.
        logger.info("whatsapp %s: message %s of type %r not stored", channel.id, wamid, kind)
        return None
    return InboundMessage(
        channel_id=channel.id,
        sender=sender,
        content=content,
        provider_message_id=wamid,
        display_name=names.get(sender),
        event_type=event_type,
        metadata=metadata,
    )


def _object(item: dict[str, Any], name: str) -> dict[str, Any]:
    value = item.get(name)
    if not isinstance(value, dict):
        raise InvalidInput(f"a '{item.get('type')}' message needs a '{name}' object", code="missing_field")
    return value


def _text(item: dict[str, Any]) -> dict[str, Any]:
    body = _object(item, "text").get("body")
    if not isinstance(body, str) or not body:
        raise InvalidInput("'text.body' is required", code="missing_field")
    return {"type": "text", "body": body}


def _media(channel: Channel, wamid: str, kind: str, item: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    data = _object(item, kind)
    media_id = str_field(data, "id", kind)
    caption = data.get("caption") if isinstance(data.get("caption"), str) else ""
    declared = data.get("mime_type") if isinstance(data.get("mime_type"), str) else ""
    metadata["media_id"] = media_id
    if provider_message_stored(channel_id=channel.id, provider_message_id=wamid):
        # A repeat stores nothing new: its content only has to be valid, and is not fetched again.
        return {"type": "text", "body": caption or f"[{kind}]"}
    try:
        stored = media.download(channel, media_id, declared_type=declared)
    except media.MediaFetchError as exc:
        logger.warning("whatsapp media %s of %s not stored: %s", media_id, wamid, exc.reason)
        metadata["media_errors"] = [{"index": "0", "error": exc.reason, "declared_type": declared[:127]}]
        return message_content(caption, [{"type": "text", "body": f"[{kind} could not be retrieved]"}]) or {}
    if kind == "audio":
        # A voice note is audio content (the core may transcribe it), not a file.
        return {"type": "audio", "url": stored.url, "mime_type": stored.mime_type}
    part = stored.as_content()
    filename = data.get("filename")
    if isinstance(filename, str) and filename.strip():
        part["filename"] = filename.strip()[:255]
    return message_content(caption, [part]) or part


def _location(item: dict[str, Any]) -> dict[str, Any]:
    data = _object(item, "location")
    latitude, longitude = data.get("latitude"), data.get("longitude")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (latitude, longitude)):
        raise InvalidInput("'location' needs a numeric 'latitude' and 'longitude'", code="invalid_field")
    content: dict[str, Any] = {"type": "location", "latitude": latitude, "longitude": longitude}
    for ours, theirs in (("label", "name"), ("address", "address")):
        if isinstance(data.get(theirs), str) and data[theirs].strip():
            content[ours] = data[theirs].strip()
    return content


def _contacts(item: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    contacts = item.get("contacts")
    if not isinstance(contacts, list) or not contacts or not all(isinstance(c, dict) for c in contacts):
        raise InvalidInput("a 'contacts' message needs a list of contacts", code="missing_field")
    metadata["contacts"] = contacts
    lines = []
    for contact in contacts:
        name = contact.get("name") if isinstance(contact.get("name"), dict) else {}
        label = name.get("formatted_name") or " ".join(
            str(name[k]) for k in ("first_name", "last_name") if isinstance(name.get(k), str)
        )
        phones = [p.get("phone") for p in contact.get("phones") or [] if isinstance(p, dict) and isinstance(p.get("phone"), str)]
        emails = [e.get("email") for e in contact.get("emails") or [] if isinstance(e, dict) and isinstance(e.get("email"), str)]
        details = ", ".join([*phones, *emails])
        lines.append(f"[Contact: {label or 'unnamed'}" + (f" ({details})" if details else "") + "]")
    return {"type": "text", "body": "\n".join(lines)}


def _interactive(item: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    data = _object(item, "interactive")
    kind = data.get("type")
    if kind not in ("button_reply", "list_reply"):
        raise InvalidInput(f"unknown interactive reply '{kind}'", code="invalid_field")
    reply = data.get(kind)
    if not isinstance(reply, dict):
        raise InvalidInput(f"'interactive.{kind}' is required", code="missing_field")
    title = str_field(reply, "title", f"interactive.{kind}")
    metadata["reply"] = {"kind": kind, "id": str(reply.get("id") or ""), "title": title}
    if isinstance(reply.get("description"), str):
        metadata["reply"]["description"] = reply["description"]
    return {"type": "text", "body": title}


def _template_button(item: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    data = _object(item, "button")
    text = str_field(data, "text", "button")
    metadata["reply"] = {"kind": "template_button", "id": str(data.get("payload") or ""), "title": text}
    return {"type": "text", "body": text}


def _reaction(channel: Channel, item: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    data = _object(item, "reaction")
    target = str_field(data, "message_id", "reaction")
    emoji = data.get("emoji") if isinstance(data.get("emoji"), str) else ""
    metadata["reaction"] = {"message_id": target, "emoji": emoji}
    # The message reacted to: ours (a delivery's wamid) or the customer's own (an event's).
    event_id = (
        RoomEvent.objects.filter(deliveries__channel=channel, deliveries__provider_message_id=target)
        .values_list("id", flat=True)
        .first()
        or RoomEvent.objects.filter(source_channel=channel, provider_message_id=target).values_list("id", flat=True).first()
    )
    if event_id:
        metadata["reaction"]["target_event_id"] = event_id
    # An empty emoji is WhatsApp's way of saying the reaction was taken back.
    return {"type": "text", "body": emoji or "[reaction removed]"}


def status_update(item: Any, raw: dict[str, Any]) -> StatusUpdate | None:
    """One ``statuses[]`` item; None for a status that says nothing about delivery."""
    if not isinstance(item, dict):
        raise InvalidInput("each 'statuses' item must be an object", code="invalid_field")
    wamid = str_field(item, "id", "statuses[]")
    vendor_status = item.get("status")
    status = VENDOR_STATUSES.get(vendor_status) if isinstance(vendor_status, str) else None
    if status is None:
        return None
    error, error_code = "", ""
    errors = item.get("errors")
    if isinstance(errors, list) and errors:
        found = graph_error(errors[0])
        if found is not None:
            error, error_code = found.text, found.code
    return StatusUpdate(provider_message_id=wamid, status=status, error=error, error_code=error_code, raw=raw)
