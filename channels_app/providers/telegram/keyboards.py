"""Our rich content as a Telegram message: its text and an inline keyboard.

Buttons and quick replies become ``InlineKeyboardButton``s
(https://core.telegram.org/bots/api#inlinekeyboardbutton): a button with a
``url`` opens it, any other sends us its ``callback_data`` (the button's
``payload``, else its label) when tapped, which comes back as a
``callback_query``. Telegram takes at most 64 bytes of callback data and (in
practice) 100 buttons a keyboard, 8 a row: an option that cannot be a button
(its data too long, a phone number to dial, past the limit) is listed in the
text instead, so nothing offered is lost. Cards become text (title,
description, image link) with their buttons on the keyboard.
"""

from __future__ import annotations

from typing import Any

from rooms.content.kinds import content_text, html_to_text

MAX_CALLBACK_DATA_BYTES = 64
MAX_BUTTONS = 100
QUICK_REPLIES_PER_ROW = 3


def _first_str(data: dict[str, Any], *names: str) -> str:
    for name in names:
        value = data.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _button(option: Any) -> tuple[dict[str, Any] | None, str]:
    """``(inline button, "")``, or ``(None, the option as a text line)`` when it cannot be a button."""
    if isinstance(option, str):
        option = {"title": option}
    if not isinstance(option, dict):
        return None, ""
    label = _first_str(option, "title", "text", "label")
    if not label:
        return None, ""
    url = _first_str(option, "url")
    if url.startswith(("https://", "http://", "tg://")):
        return {"text": label, "url": url}, ""
    phone = _first_str(option, "phone", "phone_number")
    if phone:
        return None, f"{label}: {phone}"
    data = _first_str(option, "payload", "postback", "value") or label
    if len(data.encode("utf-8")) > MAX_CALLBACK_DATA_BYTES:
        return None, label
    return {"text": label, "callback_data": data}, ""


def _body_text(content: dict[str, Any]) -> str:
    if content.get("plain_text"):
        return content["plain_text"]
    body = content.get("body", "")
    # Telegram's own markup (parse_mode) refuses what it cannot parse: plain text never fails.
    return html_to_text(body) if content.get("format") == "html" else body


def _card_text(card: dict[str, Any]) -> str:
    lines = [
        _first_str(card, "title"),
        _first_str(card, "description", "subtitle", "text"),
        _first_str(card, "image_url", "image", "media_url"),
    ]
    return "\n".join(line for line in lines if line)


def rich_message(content: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """``(text, reply_markup or None)`` for rich content; other content is its text rendering, without a keyboard."""
    if content.get("type") != "rich":
        return content_text(content), None
    rows: list[list[dict[str, Any]]] = []
    extra: list[str] = []
    count = 0

    def add(options: list[Any], per_row: int) -> None:
        nonlocal count
        row: list[dict[str, Any]] = []
        for option in options:
            button, line = _button(option)
            if button is not None and count < MAX_BUTTONS:
                row.append(button)
                count += 1
                if len(row) >= per_row:
                    rows.append(row)
                    row = []
            elif button is not None or line:
                extra.append(line or button["text"])
        if row:
            rows.append(row)

    cards = [c for c in content.get("cards") or [] if isinstance(c, dict)]
    add(list(content.get("buttons") or []), 1)
    for card in cards:
        add(list(card.get("buttons") or []), 1)
    add(list(content.get("quick_replies") or []), QUICK_REPLIES_PER_ROW)
    parts = [_body_text(content), *(_card_text(c) for c in cards)]
    if extra:
        parts.append(" | ".join(extra))
    text = "\n\n".join(p for p in parts if p.strip())
    markup = {"inline_keyboard": rows} if rows else None
    return text, markup
