"""Bot Framework activities (Bot Connector REST API v3, as Teams sends them) read into our inbound messages.

An activity is JSON with ``type``, ``id``, ``serviceUrl``, ``channelId``
("msteams"), ``from``, ``recipient`` (the bot), ``conversation`` and, by type:

- ``message``: ``text`` (in a channel or group chat it carries the bot's
  ``<at>…</at>`` mention, which we take out), ``attachments`` (files and
  inline images; the ``text/html`` copy of the text Teams adds is skipped) and,
  when an Adaptive Card's ``Action.Submit`` was pressed, ``value``: the
  action's ``data`` merged with the card's inputs. Our own cards' buttons put
  their label and payload under ``roomkit`` (``cards.py``); any other card's
  submitted values become a "name: value" reply;
- ``conversationUpdate``: ``membersAdded``/``membersRemoved`` lists of
  accounts; a system event in the room (``participant_joined``,
  ``participant_left``, or ``system`` when one activity does both).

Every other type (typing, reactions, installation updates, invokes) is
acknowledged and stores nothing. The room's address on the channel is the
conversation id; the conversation reference (service URL, conversation, bot,
user, tenant) goes with each event's metadata so the adapter can answer and
write to the conversation later (``provider.py``).
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass
from typing import Any

from rooms.enums import EventType, Visibility
from rooms.errors import InvalidInput
from rooms.inbound import InboundMessage
from rooms.models import Channel

MESSAGE = "message"
CONVERSATION_UPDATE = "conversationUpdate"
# Where our own Adaptive Card buttons keep what was pressed, inside the submitted ``value``.
SUBMIT_KEY = "roomkit"
_MAX_ADDRESS = 255
_FILE_DOWNLOAD = "application/vnd.microsoft.teams.file.download.info"


@dataclass(frozen=True)
class Activity:
    """One activity as received: the fields every type needs, and the whole body (kept as the event's ``raw``)."""

    type: str
    id: str
    service_url: str
    conversation_id: str
    raw: dict[str, Any]


def _account(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def read_activity(body: Any) -> Activity:
    """The activity in ``body``; InvalidInput (a 400, nothing stored) when it is not one."""
    if not isinstance(body, dict):
        raise InvalidInput("the body must be a JSON object (a Bot Framework activity)", code="invalid_body")
    kind = _str(body.get("type"))
    if not kind:
        raise InvalidInput("'type' is required", code="missing_field")
    service_url = _str(body.get("serviceUrl"))
    if not service_url.startswith(("https://", "http://")):
        raise InvalidInput("'serviceUrl' must be an http(s) URL", code="invalid_field")
    conversation_id = _str(_account(body, "conversation").get("id"))
    if not conversation_id:
        raise InvalidInput("'conversation.id' is required", code="missing_field")
    if len(conversation_id) > _MAX_ADDRESS:
        raise InvalidInput(f"'conversation.id' is longer than {_MAX_ADDRESS} characters", code="invalid_field")
    activity_id = _str(body.get("id"))
    if kind in (MESSAGE, CONVERSATION_UPDATE) and not activity_id:
        raise InvalidInput("'id' is required", code="missing_field")
    return Activity(kind, activity_id, service_url, conversation_id, body)


def conversation_reference(activity: Activity) -> dict[str, str]:
    """What it takes to write into this conversation later (``POST {service_url}/v3/conversations/{id}/activities``)."""
    body = activity.raw
    conversation = _account(body, "conversation")
    sender, bot = _account(body, "from"), _account(body, "recipient")
    tenant = _str(conversation.get("tenantId")) or _str(_account(_account(body, "channelData"), "tenant").get("id"))
    reference = {
        "service_url": activity.service_url,
        "conversation_id": activity.conversation_id,
        "conversation_type": _str(conversation.get("conversationType")),
        "channel_id": _str(body.get("channelId")),
        "bot_id": _str(bot.get("id")),
        "bot_name": _str(bot.get("name")),
        "user_id": _str(sender.get("id")),
        "user_name": _str(sender.get("name")),
        "tenant_id": tenant,
    }
    return {k: v for k, v in reference.items() if v}


def inbound_message(channel: Channel, activity: Activity) -> InboundMessage:
    """A ``message`` activity as our inbound message, deduplicated on the activity id."""
    body = activity.raw
    metadata: dict[str, Any] = {"raw": body, "teams": conversation_reference(activity)}
    content = _message_content(body, metadata)
    return InboundMessage(
        channel_id=channel.id,
        sender=activity.conversation_id,
        display_name=_str(_account(body, "from").get("name")) or None,
        content=content,
        provider_message_id=activity.id,
        metadata=metadata,
    )


def _message_content(body: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    text = body.get("text")
    if text is not None and not isinstance(text, str):
        raise InvalidInput("'text' must be a string", code="invalid_field")
    text = _without_bot_mention(text or "", body).strip()
    value = body.get("value")
    if isinstance(value, dict) and value:
        metadata["submitted"] = value
        reply = submitted_reply(value)
        if reply and not text:
            text = reply
    attachments = body.get("attachments")
    if attachments is not None and not isinstance(attachments, list):
        raise InvalidInput("'attachments' must be a list", code="invalid_field")
    parts = [p for p in (_attachment_part(a) for a in attachments or []) if p]
    if not parts:
        if not text:
            raise InvalidInput("the message has no text, submitted values or attachments", code="missing_field")
        return {"type": "text", "body": text}
    if len(parts) == 1 and not text:
        return parts[0]
    return {"type": "composite", "parts": ([{"type": "text", "body": text}] if text else []) + parts}


def submitted_reply(value: dict[str, Any]) -> str:
    """What an Adaptive Card submit said: our button's label, else the card's inputs as ``name: value`` lines."""
    ours = value.get(SUBMIT_KEY)
    if isinstance(ours, dict):
        label = _str(ours.get("title")) or _str(ours.get("payload"))
        if label:
            return label
    lines = []
    for name, item in value.items():
        if name in (SUBMIT_KEY, "msteams") or item is None or item == "":
            continue
        shown = item if isinstance(item, str) else str(item)
        lines.append(f"{name}: {shown}")
    return "\n".join(lines)


def _without_bot_mention(text: str, body: dict[str, Any]) -> str:
    """The text without the ``<at>Bot</at>`` that addressing the bot in a channel or group chat puts in it."""
    bot_id = _str(_account(body, "recipient").get("id"))
    entities = body.get("entities")
    for entity in entities if isinstance(entities, list) else []:
        if not isinstance(entity, dict) or entity.get("type") != "mention":
            continue
        mentioned = entity.get("mentioned")
        if isinstance(mentioned, dict) and mentioned.get("id") == bot_id and isinstance(entity.get("text"), str):
            text = text.replace(entity["text"], "")
    return re.sub(r"[ \t]{2,}", " ", text)


def _attachment_part(attachment: Any) -> dict[str, Any] | None:
    """A file or an image the user sent, as media content (a link to Teams' copy); None for what is no file."""
    if not isinstance(attachment, dict):
        return None
    content_type = _str(attachment.get("contentType"))
    name = _str(attachment.get("name"))
    if content_type == _FILE_DOWNLOAD:
        content = attachment.get("content")
        url = _str(content.get("downloadUrl")) if isinstance(content, dict) else ""
        if not url:
            return None
        file_type = _str(content.get("fileType")) if isinstance(content, dict) else ""
        mime = mimetypes.guess_type(name or f"file.{file_type}")[0] or "application/octet-stream"
        part = {"type": "media", "url": url, "mime_type": mime}
        return {**part, "filename": name} if name else part
    url = _str(attachment.get("contentUrl"))
    if url and "/" in content_type and not content_type.startswith("text/") and not content_type.startswith("application/vnd."):
        # An inline image (image/*) or another file Teams hosts; its text/html twin of the message is skipped.
        part = {"type": "media", "url": url, "mime_type": content_type}
        return {**part, "filename": name} if name else part
    return None


def members_event(channel: Channel, activity: Activity) -> InboundMessage | None:
    """A ``conversationUpdate`` that adds or removes members as a system event; None when it changes no membership."""
    body = activity.raw
    added = _members(body.get("membersAdded"))
    removed = _members(body.get("membersRemoved"))
    if not added and not removed:
        return None
    bot_id = _str(_account(body, "recipient").get("id"))
    phrases = []
    if added:
        phrases.append(_names(added, bot_id) + " joined")
    if removed:
        phrases.append(_names(removed, bot_id) + " left")
    if added and removed:
        event_type = EventType.SYSTEM
    else:
        event_type = EventType.PARTICIPANT_JOINED if added else EventType.PARTICIPANT_LEFT
    data = {"members_added": added, "members_removed": removed, "conversation_id": activity.conversation_id}
    return InboundMessage(
        channel_id=channel.id,
        sender=activity.conversation_id,
        display_name=_str(_account(body, "from").get("name")) or None,
        event_type=event_type,
        visibility=Visibility.INTERNAL,
        content={"type": "system", "body": "; ".join(phrases), "code": event_type, "data": data},
        provider_message_id=activity.id,
        metadata={"raw": body, "teams": conversation_reference(activity)},
    )


def _members(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list):
        return []
    members = []
    for account in value:
        if isinstance(account, dict) and _str(account.get("id")):
            member = {"id": _str(account["id"]), "name": _str(account.get("name"))}
            if _str(account.get("aadObjectId")):
                member["aad_object_id"] = _str(account["aadObjectId"])
            members.append(member)
    return members


def _names(members: list[dict[str, str]], bot_id: str) -> str:
    names = ["The bot" if m["id"] == bot_id else (m["name"] or m["id"]) for m in members]
    return ", ".join(names)
