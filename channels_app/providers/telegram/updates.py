"""Telegram updates (https://core.telegram.org/bots/api#update) read into our inbound messages.

One webhook request carries one ``Update``: its ``update_id`` and at most one
of ``message``, ``edited_message``, ``callback_query`` (the kinds we ask for in
``setWebhook``'s ``allowed_updates``) or another kind we acknowledge and leave.

- Every update's idempotency key is ``update:<update_id>``: Telegram resends
  an update until it gets a 2xx, and a repeat stores nothing new.
- A message's provider id is ``<chat id>:<message_id>`` (message ids are
  unique per chat), which is how a later ``edited_message`` finds the event
  it changes.
- The sender's address is the chat id; the name comes from ``from``.
- Photos (the largest size), documents and voice notes are fetched through
  ``getFile`` and stored by ``channels_app.inbound_media``, as the SMS
  vendors' attachments are; a voice note becomes ``audio`` content.
- A ``callback_query`` (a tap on an inline keyboard button we sent) is the
  user's reply: the button's label as text, its callback data in the
  metadata's ``postback_data``. The webhook's answer calls
  ``answerCallbackQuery`` (``provider.inbound_response``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from channels_app.inbound_media import MediaFetchError, fetch_inbound_media
from channels_app.providers.telegram import api
from rooms.enums import EventType
from rooms.errors import InvalidInput
from rooms.inbound import InboundMessage
from rooms.models import Channel, RoomEvent
from rooms.selectors import provider_message_stored

logger = logging.getLogger(__name__)

MESSAGE = "message"
EDITED_MESSAGE = "edited_message"
CALLBACK_QUERY = "callback_query"
# What setWebhook asks Telegram to send: the kinds read here, nothing else.
ALLOWED_UPDATES = (MESSAGE, EDITED_MESSAGE, CALLBACK_QUERY)
# Telegram waits for our answer before sending the chat's next update; a file is fetched within this.
MEDIA_TIMEOUT_SECONDS = 10.0
MAX_CAPTION = 4096


@dataclass(frozen=True)
class Update:
    update_id: int
    kind: str  # the update's one optional field present ("message", …), or "" when none
    body: dict[str, Any]  # that field's object
    raw: dict[str, Any]


def parse_update(data: dict[str, Any]) -> Update:
    update_id = data.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool) or update_id < 0:
        raise InvalidInput("'update_id' must be a non-negative integer", code="missing_field")
    kind = next((k for k in data if k != "update_id" and isinstance(data[k], dict)), "")
    return Update(update_id, kind, data.get(kind, {}) if kind else {}, data)


def idempotency_key(update: Update) -> str:
    return f"update:{update.update_id}"


def _chat_id(message: dict[str, Any], where: str) -> str:
    chat = message.get("chat")
    chat_id = chat.get("id") if isinstance(chat, dict) else None
    if not isinstance(chat_id, int) or isinstance(chat_id, bool):
        raise InvalidInput(f"'{where}.chat.id' must be an integer", code="missing_field")
    return str(chat_id)


def _message_id(message: dict[str, Any], where: str) -> int:
    message_id = message.get("message_id")
    if not isinstance(message_id, int) or isinstance(message_id, bool):
        raise InvalidInput(f"'{where}.message_id' must be an integer", code="missing_field")
    return message_id


def message_key(chat_id: str, message_id: int) -> str:
    """Our provider message id for a Telegram message: unique per bot, as message ids are per chat."""
    return f"{chat_id}:{message_id}"


def display_name(user: Any) -> str | None:
    """``first_name last_name``, else ``@username``; None when ``from`` says nothing."""
    if not isinstance(user, dict):
        return None
    names = [user.get(k) for k in ("first_name", "last_name")]
    full = " ".join(n.strip() for n in names if isinstance(n, str) and n.strip())
    if full:
        return full[:255]
    username = user.get("username")
    return f"@{username}"[:255] if isinstance(username, str) and username else None


def _user_metadata(user: Any) -> dict[str, Any]:
    if not isinstance(user, dict):
        return {}
    return {k: user[k] for k in ("id", "username", "language_code") if isinstance(user.get(k), (str, int))}


# --- content ------------------------------------------------------------------------------------


def _text_of(message: dict[str, Any]) -> str:
    for key in ("text", "caption"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _file_id(item: Any, where: str) -> tuple[str, int | None]:
    if not isinstance(item, dict) or not isinstance(item.get("file_id"), str) or not item["file_id"]:
        raise InvalidInput(f"'{where}.file_id' is required", code="missing_field")
    size = item.get("file_size")
    return item["file_id"], size if isinstance(size, int) and not isinstance(size, bool) else None


def largest_photo(sizes: Any) -> dict[str, Any]:
    """The biggest of a photo's ``PhotoSize``s (by pixels, then bytes): what the user sent, not a thumbnail."""
    if not isinstance(sizes, list) or not sizes or not all(isinstance(s, dict) for s in sizes):
        raise InvalidInput("'photo' must be a non-empty list of sizes", code="invalid_field")

    def area(size: dict[str, Any]) -> tuple[int, int]:
        w, h, b = size.get("width"), size.get("height"), size.get("file_size")
        pixels = w * h if isinstance(w, int) and isinstance(h, int) else 0
        return pixels, b if isinstance(b, int) else 0

    return max(sizes, key=area)


def _fetch_file(channel: Channel, token: str, file_id: str, declared_type: str) -> dict[str, Any]:
    """``getFile`` then the file's bytes, stored; raises ``MediaFetchError``."""
    try:
        described = api.call(channel, token, "getFile", {"file_id": file_id}, timeout=MEDIA_TIMEOUT_SECONDS)
    except api.BotAPIError as exc:
        raise MediaFetchError(f"getfile_{exc.error_code or 'network'}", "getFile failed") from None
    path = described.get("file_path") if isinstance(described, dict) else None
    if not isinstance(path, str) or not path:
        # Telegram gives no path for a file over 20 MB: a bot cannot download it.
        raise MediaFetchError("too_large", "Telegram gave no file_path (over the Bot API's 20 MB download limit)")
    media = fetch_inbound_media(
        api.file_url(channel, token, path), vendor="telegram", declared_type=declared_type, timeout=MEDIA_TIMEOUT_SECONDS
    )
    return media.as_content()


def _lost(kind: str, reason: str, metadata: dict[str, Any]) -> dict[str, Any]:
    metadata["media_errors"] = [{"index": "0", "error": reason, "declared_type": kind}]
    return {"type": "text", "body": f"[{kind} could not be retrieved]"}


def message_content(channel: Channel, message: dict[str, Any], key: str, metadata: dict[str, Any]) -> dict[str, Any] | None:
    """A message's content: text, a stored photo/document/voice note, or a location; None for kinds we do not take."""
    text = _text_of(message)
    location = message.get("location")
    if isinstance(location, dict):
        lat, lon = location.get("latitude"), location.get("longitude")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lat, lon)):
            raise InvalidInput("'location' needs a numeric latitude and longitude", code="invalid_field")
        content: dict[str, Any] = {"type": "location", "latitude": lat, "longitude": lon}
        venue = message.get("venue")
        if isinstance(venue, dict):
            if isinstance(venue.get("title"), str) and venue["title"]:
                content["label"] = venue["title"]
            if isinstance(venue.get("address"), str) and venue["address"]:
                content["address"] = venue["address"]
        return content
    attachment: tuple[str, Any, str] | None = None  # (kind, the file object, declared type)
    if "photo" in message:
        attachment = ("photo", largest_photo(message["photo"]), "image/jpeg")
    elif isinstance(message.get("voice"), dict):
        attachment = ("voice", message["voice"], str(message["voice"].get("mime_type") or "audio/ogg"))
    elif isinstance(message.get("audio"), dict):
        attachment = ("audio", message["audio"], str(message["audio"].get("mime_type") or ""))
    elif isinstance(message.get("document"), dict):
        attachment = ("document", message["document"], str(message["document"].get("mime_type") or ""))
    if attachment is None:
        return {"type": "text", "body": text} if text else None
    kind, item, declared = attachment
    file_id, _size = _file_id(item, kind)
    if provider_message_stored(channel_id=channel.id, provider_message_id=key):
        # A repeat stores nothing new: its content need only be valid, its file is not fetched again.
        return {"type": "text", "body": text or f"[{kind}]"}
    token = channel.get_secret("bot_token") or ""
    try:
        stored = _fetch_file(channel, token, file_id, declared)
    except MediaFetchError as exc:
        logger.warning("telegram %s: %s of %s not stored: %s", channel.id, kind, key, exc.reason)
        lost = _lost(kind, exc.reason, metadata)
        return {"type": "text", "body": f"{text}\n{lost['body']}" if text else lost["body"]}
    if kind in ("voice", "audio"):
        audio: dict[str, Any] = {"type": "audio", "url": stored["url"], "mime_type": stored["mime_type"]}
        duration = item.get("duration")
        if isinstance(duration, int) and not isinstance(duration, bool) and duration >= 0:
            audio["duration_ms"] = duration * 1000
        if text:
            # Audio content has no caption: the caption rides along as the message's text.
            return {"type": "composite", "parts": [{"type": "text", "body": text}, audio]}
        return audio
    if kind == "document" and isinstance(item.get("file_name"), str) and item["file_name"]:
        stored["filename"] = item["file_name"][:255]
    if text:
        stored["caption"] = text[:MAX_CAPTION]
    return stored


# --- updates to messages ------------------------------------------------------------------------


def inbound_messages(channel: Channel, update: Update) -> list[InboundMessage] | None:
    """The update as messages for the inbound path; None for an update kind (or message kind) we do not take."""
    if update.kind == MESSAGE:
        return _new_message(channel, update)
    if update.kind == EDITED_MESSAGE:
        return _edited_message(channel, update)
    if update.kind == CALLBACK_QUERY:
        return _callback_query(channel, update)
    return None


def _base_metadata(update: Update, message: dict[str, Any]) -> dict[str, Any]:
    telegram = {"update_id": update.update_id, "from": _user_metadata(message.get("from"))}
    chat = message.get("chat")
    if isinstance(chat, dict) and isinstance(chat.get("type"), str):
        telegram["chat_type"] = chat["type"]
    return {"telegram": telegram, "raw": update.raw}


def _new_message(channel: Channel, update: Update) -> list[InboundMessage] | None:
    message = update.body
    chat_id = _chat_id(message, MESSAGE)
    key = message_key(chat_id, _message_id(message, MESSAGE))
    metadata = _base_metadata(update, message)
    metadata["telegram"]["message_id"] = message["message_id"]
    content = message_content(channel, message, key, metadata)
    if content is None:
        return None
    return [
        InboundMessage(
            channel_id=channel.id,
            sender=chat_id,
            content=content,
            provider_message_id=key,
            idempotency_key=idempotency_key(update),
            display_name=display_name(message.get("from")),
            metadata=metadata,
        )
    ]


def _edited_message(channel: Channel, update: Update) -> list[InboundMessage] | None:
    """An edit event of the message it changes; a message we never stored arrives as a new one."""
    message = update.body
    chat_id = _chat_id(message, EDITED_MESSAGE)
    key = message_key(chat_id, _message_id(message, EDITED_MESSAGE))
    metadata = _base_metadata(update, message)
    metadata["telegram"]["message_id"] = message["message_id"]
    name = display_name(message.get("from"))
    target = RoomEvent.objects.filter(source_channel_id=channel.id, provider_message_id=key, type=EventType.MESSAGE).first()
    if target is None:
        content = message_content(channel, message, key, metadata)
        if content is None:
            return None
        metadata["telegram"]["edited"] = True
        return [
            InboundMessage(
                channel_id=channel.id,
                sender=chat_id,
                content=content,
                provider_message_id=key,
                idempotency_key=idempotency_key(update),
                display_name=name,
                metadata=metadata,
            )
        ]
    new_content = _edited_content(target.content, message)
    if new_content is None:
        return None
    return [
        InboundMessage(
            channel_id=channel.id,
            sender=chat_id,
            content={"type": "edit", "target_event_id": target.id, "new_content": new_content},
            event_type=EventType.EDIT,
            idempotency_key=idempotency_key(update),
            display_name=name,
            metadata=metadata,
        )
    ]


def _edited_content(stored: dict[str, Any], message: dict[str, Any]) -> dict[str, Any] | None:
    """The edited message's new content. Telegram edits text or a caption; the file we stored stays."""
    text = _text_of(message)
    if stored.get("type") == "media":
        new = {k: v for k, v in stored.items() if k != "caption"}
        if text:
            new["caption"] = text[:MAX_CAPTION]
        return new
    if stored.get("type") == "location" and isinstance(message.get("location"), dict):
        # A live location's update arrives as an edit of the message.
        location = message["location"]
        lat, lon = location.get("latitude"), location.get("longitude")
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lat, lon)):
            return {**stored, "latitude": lat, "longitude": lon}
        return None
    return {"type": "text", "body": text} if text else None


def _callback_query(channel: Channel, update: Update) -> list[InboundMessage]:
    query = update.body
    query_id = query.get("id")
    if not isinstance(query_id, str) or not query_id:
        raise InvalidInput("'callback_query.id' is required", code="missing_field")
    user = query.get("from")
    message = query.get("message")
    if isinstance(message, dict) and isinstance(message.get("chat"), dict):
        chat_id = _chat_id(message, "callback_query.message")
    elif isinstance(user, dict) and isinstance(user.get("id"), int):
        # The message is too old for Telegram to include: the user's own id is their private chat's id.
        chat_id = str(user["id"])
    else:
        raise InvalidInput("'callback_query' names no chat and no user", code="missing_field")
    data = query.get("data") if isinstance(query.get("data"), str) else ""
    label = _button_label(message, data) or data
    if not label:
        raise InvalidInput("'callback_query' carries no data", code="missing_field")
    metadata = _base_metadata(update, query)
    metadata["telegram"]["callback_query_id"] = query_id
    metadata["postback_data"] = data
    if isinstance(message, dict) and isinstance(message.get("message_id"), int):
        metadata["telegram"]["reply_to_message_id"] = message["message_id"]
    return [
        InboundMessage(
            channel_id=channel.id,
            sender=chat_id,
            content={"type": "text", "body": label},
            provider_message_id=f"callback:{query_id}",
            idempotency_key=idempotency_key(update),
            display_name=display_name(user),
            metadata=metadata,
        )
    ]


def _button_label(message: Any, data: str) -> str:
    """The text of the button the user pressed, found in the keyboard of the message it was under."""
    if not isinstance(message, dict) or not data:
        return ""
    markup = message.get("reply_markup")
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    for row in rows if isinstance(rows, list) else []:
        for button in row if isinstance(row, list) else []:
            if isinstance(button, dict) and button.get("callback_data") == data and isinstance(button.get("text"), str):
                return button["text"]
    return ""
