"""Our content as a Telnyx RCS ``agent_message``, fitted to what the recipient's device can show.

Telnyx's RCS schema is Google's RBM schema in snake case: a
``content_message`` holds exactly one of ``text``, ``content_info`` (a file) or
``rich_card`` (a ``standalone_card`` or a ``carousel_card`` of 2 to 10 cards),
plus up to 11 ``suggestions`` (a ``reply`` or an ``action``: open a URL, dial
a number), each labelled with at most 25 characters and carrying base64
``postback_data`` that comes back when the user taps it.

Rich content maps as: ``body`` → the text (or the first card's description
when there are cards), ``buttons`` and ``quick_replies`` → suggestions,
``cards`` → a rich card. A card is ``{"title", "description" (or
"subtitle"/"text"), "image_url" (or "image"/"media_url"), "buttons"}``; a
button is ``{"title" (or "text"), "url"?, "phone"?, "payload"?}``.

``features`` is what Telnyx's capability check said the device supports
(None: not known). A device that supports RCS but not rich cards
(``GENERIC_RCS_FEATURE`` only) gets the text rendering with the suggestions.
"""

from __future__ import annotations

import base64
from typing import Any

from rooms.content.kinds import content_text, html_to_text
from rooms.inbound.transcoding import truncate

MAX_SUGGESTIONS = 11
MAX_CARD_SUGGESTIONS = 4
MAX_CAROUSEL_CARDS = 10
MAX_SUGGESTION_TEXT = 25
MAX_CARD_TITLE = 200
MAX_CARD_DESCRIPTION = 2000
MAX_TEXT = 3072
# base64 grows 4/3: this keeps postback_data within its 2048 characters.
_MAX_POSTBACK_BYTES = 1536
RICHCARD_STANDALONE = "RICHCARD_STANDALONE"
RICHCARD_CAROUSEL = "RICHCARD_CAROUSEL"


def agent_message(content: dict[str, Any], features: list[str] | None) -> dict[str, Any]:
    """The ``agent_message`` for one delivery's content."""
    return {"content_message": content_message(content, features)}


def content_message(content: dict[str, Any], features: list[str] | None) -> dict[str, Any]:
    kind = content.get("type")
    if kind == "text":
        return {"text": truncate(content.get("body", ""), MAX_TEXT)}
    if kind == "media":
        return _media_message(content, features)
    if kind == "rich":
        return _rich_message(content, features)
    # Transcoding gives an RCS channel text, rich or media only; anything else goes as its text.
    return {"text": truncate(content_text(content), MAX_TEXT)}


def _allows(features: list[str] | None, feature: str) -> bool:
    return features is None or feature in features


def _media_message(content: dict[str, Any], features: list[str] | None) -> dict[str, Any]:
    file = {"content_info": {"file_url": content["url"]}}
    caption = content.get("caption")
    if not caption:
        return file
    if not _allows(features, RICHCARD_STANDALONE):
        # One content per message: a file and its caption together need a card.
        return {"text": truncate(content_text(content), MAX_TEXT)}
    card = {"description": truncate(caption, MAX_CARD_DESCRIPTION), "media": {"height": "MEDIUM", **file}}
    return {"rich_card": _standalone(card)}


def _rich_text(content: dict[str, Any]) -> str:
    if content.get("plain_text"):
        return content["plain_text"]
    body = content.get("body", "")
    return html_to_text(body) if content.get("format") == "html" else body


def _rich_message(content: dict[str, Any], features: list[str] | None) -> dict[str, Any]:
    text = _rich_text(content)
    options = [*(content.get("buttons") or []), *(content.get("quick_replies") or [])]
    suggestions = [s for s in (_suggestion(o) for o in options) if s]
    given = [card for card in content.get("cards") or [] if isinstance(card, dict)]
    cards = [c for c in (_card(card) for card in given) if c][:MAX_CAROUSEL_CARDS]
    need = RICHCARD_CAROUSEL if len(cards) > 1 else RICHCARD_STANDALONE
    message: dict[str, Any]
    if cards and _allows(features, need):
        if text.strip():
            # A message holds one content: the body goes into the first card.
            first = cards[0]
            description = f"{text}\n\n{first['description']}" if first.get("description") else text
            first["description"] = truncate(description, MAX_CARD_DESCRIPTION)
        if len(cards) == 1:
            message = {"rich_card": _standalone(cards[0])}
        else:
            message = {"rich_card": {"carousel_card": {"card_width": "MEDIUM", "card_contents": cards}}}
    else:
        rendered = "\n\n".join(p for p in [text, *(_card_text(c) for c in given)] if p)
        message = {"text": truncate(rendered or content_text(content), MAX_TEXT)}
    if suggestions:
        message["suggestions"] = suggestions[:MAX_SUGGESTIONS]
    return message


def _standalone(card: dict[str, Any]) -> dict[str, Any]:
    return {
        "standalone_card": {
            "card_orientation": "VERTICAL",
            "thumbnail_image_alignment": "THUMBNAIL_IMAGE_ALIGNMENT_UNSPECIFIED",
            "card_content": card,
        }
    }


def _first_str(data: dict[str, Any], *names: str) -> str:
    for name in names:
        value = data.get(name)
        if isinstance(value, str) and value.strip():
            return value
    return ""


def _card(card: dict[str, Any]) -> dict[str, Any] | None:
    """A card as an RBM ``card_content``; None for a card with nothing to show (RBM refuses those)."""
    out: dict[str, Any] = {}
    title = _first_str(card, "title")
    description = _first_str(card, "description", "subtitle", "text")
    image = _first_str(card, "image_url", "image", "media_url")
    if title:
        out["title"] = truncate(title, MAX_CARD_TITLE)
    if description:
        out["description"] = truncate(description, MAX_CARD_DESCRIPTION)
    if image:
        out["media"] = {"height": "MEDIUM", "content_info": {"file_url": image}}
    if not out:
        return None
    suggestions = [s for s in (_suggestion(b) for b in card.get("buttons") or []) if s]
    if suggestions:
        out["suggestions"] = suggestions[:MAX_CARD_SUGGESTIONS]
    return out


def _card_text(card: dict[str, Any]) -> str:
    """A card for a device that cannot show cards: its title, description, image link and button labels."""
    lines = [
        _first_str(card, "title"),
        _first_str(card, "description", "subtitle", "text"),
        _first_str(card, "image_url", "image", "media_url"),
    ]
    labels = [_first_str(b, "title", "text") if isinstance(b, dict) else str(b) for b in card.get("buttons") or []]
    if any(labels):
        lines.append(" | ".join(label for label in labels if label))
    return "\n".join(line for line in lines if line)


def _postback(value: str) -> str:
    raw = value.encode("utf-8")[:_MAX_POSTBACK_BYTES]
    return base64.b64encode(raw.decode("utf-8", "ignore").encode("utf-8")).decode("ascii")


def _suggestion(button: Any) -> dict[str, Any] | None:
    """A button or quick reply as an RBM suggestion: open a URL, dial a number, or reply."""
    if isinstance(button, str):
        button = {"title": button}
    if not isinstance(button, dict):
        return None
    label = _first_str(button, "title", "text", "label")
    if not label:
        return None
    payload = _first_str(button, "payload", "postback", "value") or label
    common = {"text": truncate(label, MAX_SUGGESTION_TEXT), "postback_data": _postback(payload)}
    url = _first_str(button, "url")
    if url:
        return {
            "action": {
                **common,
                "open_url_action": {"url": url, "application": "BROWSER", "webview_view_mode": "WEBVIEW_VIEW_MODE_UNSPECIFIED"},
            }
        }
    phone = _first_str(button, "phone", "phone_number")
    if phone:
        return {"action": {**common, "dial_action": {"phone_number": phone}}}
    return {"reply": common}


def rich_plain_text(content: dict[str, Any]) -> str:
    """Rich content as text for SMS: the body, each card, and the options to answer with."""
    cards = [_card_text(c) for c in content.get("cards") or [] if isinstance(c, dict)]
    text = content_text(content)
    return "\n\n".join(p for p in [text, *cards] if p)
