"""Our content as Messenger Send API messages.

text → ``text`` (2000 characters); media → an ``attachment`` of type
image/video/audio/file by URL (its caption a second message, Messenger's
attachments take none); rich content → ``quick_replies`` (up to 13, titles of
at most 20 characters) for options without links, a ``button`` template (up
to 3 buttons: ``web_url`` or ``postback``, text of at most 640) for buttons,
a ``generic`` template (up to 10 cards, titles and subtitles of 80, 3 buttons
each) for cards; anything beyond those limits goes as its text. The limits are
the Send API reference's.
"""

from __future__ import annotations

from typing import Any

from rooms.content.kinds import content_text
from rooms.inbound.transcoding import truncate

MAX_TEXT = 2000
MAX_QUICK_REPLIES = 13
MAX_QUICK_REPLY_TITLE = 20
MAX_BUTTONS = 3
MAX_BUTTON_TITLE = 20
MAX_BUTTON_TEXT = 640
MAX_CARDS = 10
MAX_CARD_TEXT = 80
MAX_PAYLOAD = 1000


def messages_for(content: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``message`` objects one delivery sends, in order (more than one only for a captioned file)."""
    kind = content.get("type")
    if kind == "text":
        return [_text(content.get("body", ""))]
    if kind == "media":
        attachment = {"attachment": {"type": _file_type(content), "payload": {"url": content["url"], "is_reusable": True}}}
        return [attachment, _text(content["caption"])] if content.get("caption") else [attachment]
    if kind == "rich":
        return [_rich(content)]
    return [_text(content_text(content))]


def _text(body: str) -> dict[str, Any]:
    return {"text": truncate(body, MAX_TEXT)}


def _file_type(content: dict[str, Any]) -> str:
    major = str(content.get("mime_type") or "").split("/", 1)[0]
    return major if major in ("image", "video", "audio") else "file"


def _title(value: Any) -> str:
    return str(value or "").strip()


def _button(button: Any) -> dict[str, Any] | None:
    if isinstance(button, str):
        button = {"title": button}
    if not isinstance(button, dict):
        return None
    title = _title(button.get("title") or button.get("text"))
    if not title or len(title) > MAX_BUTTON_TITLE:
        return None
    if button.get("url"):
        return {"type": "web_url", "url": str(button["url"]), "title": title}
    if button.get("phone"):
        return {"type": "phone_number", "payload": str(button["phone"]), "title": title}
    return {"type": "postback", "title": title, "payload": str(button.get("payload") or title)[:MAX_PAYLOAD]}


def _rich(content: dict[str, Any]) -> dict[str, Any]:
    body = content_text({**content, "buttons": None, "quick_replies": None})
    buttons = content.get("buttons") or []
    replies = content.get("quick_replies") or []
    cards = [c for c in content.get("cards") or [] if isinstance(c, dict)]
    if cards:
        return _generic(cards) or _text(content_text(content))
    if buttons:
        made = [_button(b) for b in buttons]
        if len(made) <= MAX_BUTTONS and all(made) and body and len(body) <= MAX_BUTTON_TEXT and not replies:
            payload = {"template_type": "button", "text": body, "buttons": made}
            return {"attachment": {"type": "template", "payload": payload}}
        # Buttons that do not fit: plain options become quick replies where they can.
        if all(isinstance(b, dict) and not b.get("url") and not b.get("phone") for b in buttons):
            replies = [_title(b.get("title") or b.get("text")) for b in buttons] + list(replies)
        else:
            return _text(content_text(content))
    titles = [_title(r) for r in replies]
    if titles and len(titles) <= MAX_QUICK_REPLIES and all(0 < len(t) <= MAX_QUICK_REPLY_TITLE for t in titles) and body:
        quick = [{"content_type": "text", "title": t, "payload": t[:MAX_PAYLOAD]} for t in titles]
        return {"text": truncate(body, MAX_TEXT), "quick_replies": quick}
    return _text(content_text(content))


def _generic(cards: list[dict[str, Any]]) -> dict[str, Any] | None:
    if len(cards) > MAX_CARDS:
        return None
    elements = []
    for card in cards:
        title = _title(card.get("title"))
        if not title or len(title) > MAX_CARD_TEXT:
            return None
        element: dict[str, Any] = {"title": title}
        subtitle = _title(card.get("description") or card.get("subtitle") or card.get("text"))
        if subtitle:
            element["subtitle"] = truncate(subtitle, MAX_CARD_TEXT)
        image = card.get("image_url") or card.get("image") or card.get("media_url")
        if image:
            element["image_url"] = str(image)
        made = [_button(b) for b in card.get("buttons") or []]
        if len(made) > MAX_BUTTONS or not all(made):
            return None
        if made:
            element["buttons"] = made
        elements.append(element)
    return {"attachment": {"type": "template", "payload": {"template_type": "generic", "elements": elements}}}
