"""RCS rich content as Twilio Content Templates (``twilio/card``, ``twilio/carousel``, ``twilio/text``).

Twilio sends rich RCS (cards, suggested replies, suggested actions) only as a
Content Template: the content is created once with the Content API
(``POST {content_api_base}/v1/Content``), then each message names it by its
``HX…`` sid (``ContentSid``). A template may hold several types; Twilio picks
the richest one the recipient's channel can show, so every template here also
carries ``twilio/text``, the SMS rendering used when the Messaging Service
falls back to SMS.

Our ``rich`` content maps as Twilio's twilio/card page documents for RCS:
``title`` → card title (200), text → card description (1,600), buttons with a
``url`` → ``URL`` (open URL action), with a ``phone`` → ``PHONE_NUMBER`` (dial
action), others and ``quick_replies`` → ``QUICK_REPLY`` (suggested reply; its
``payload``/``id`` comes back as ``ButtonPayload``), at most 11 in all. One
card is a ``twilio/card``, two to ten a ``twilio/carousel`` (4 actions each).
A template is named by a hash of its types, so equal content reuses the
template (its sid is cached), and the same definition never makes two.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from rooms.content.kinds import content_text, html_to_text

CARD_TITLE_MAX = 200
CARD_BODY_MAX = 1600
SMS_TEXT_MAX = 1600
QUICK_REPLY_TITLE_MAX = 20
ACTION_TITLE_MAX = 25
PAYLOAD_MAX = 1024
MAX_ACTIONS = 11
CAROUSEL_CARD_ACTIONS_MAX = 4
CAROUSEL_MAX = 10


def needs_template(content: dict[str, Any]) -> bool:
    """Rich content with something to tap or look at: only a Content Template carries it over RCS."""
    return content.get("type") == "rich" and bool(content.get("buttons") or content.get("cards") or content.get("quick_replies"))


def rich_text(content: dict[str, Any]) -> str:
    """The rich message's own text, without its options listed (RCS shows them as chips)."""
    if content.get("plain_text"):
        return str(content["plain_text"])
    body = str(content.get("body") or "")
    return html_to_text(body) if content.get("format") == "html" else body


def _label(button: dict[str, Any]) -> str:
    return str(button.get("title") or button.get("text") or button.get("label") or "").strip()


def _action(button: Any) -> dict[str, str] | None:
    if isinstance(button, str):
        button = {"title": button}
    if not isinstance(button, dict):
        return None
    label = _label(button)
    if not label:
        return None
    if button.get("url"):
        return {"type": "URL", "title": label[:ACTION_TITLE_MAX], "url": str(button["url"])}
    phone = button.get("phone") or button.get("phone_number")
    if phone:
        return {"type": "PHONE_NUMBER", "title": label[:ACTION_TITLE_MAX], "phone": str(phone)}
    payload = button.get("payload") or button.get("id") or button.get("value") or label
    return {"type": "QUICK_REPLY", "title": label[:QUICK_REPLY_TITLE_MAX], "id": str(payload)[:PAYLOAD_MAX]}


def _actions(buttons: Any, limit: int) -> list[dict[str, str]]:
    actions = [a for a in (_action(b) for b in (buttons or [])) if a is not None]
    return actions[:limit]


def _media(card: dict[str, Any]) -> str:
    media = card.get("media") or card.get("image") or card.get("image_url") or card.get("media_url") or ""
    if isinstance(media, list):
        media = media[0] if media else ""
    if isinstance(media, dict):
        media = media.get("url") or ""
    return str(media)


def _card_text(card: dict[str, Any]) -> str:
    return str(card.get("body") or card.get("description") or card.get("text") or card.get("subtitle") or "")


def _card(title: str, body: str, media: str, actions: list[dict[str, str]]) -> dict[str, Any]:
    card: dict[str, Any] = {}
    if title:
        card["title"] = title[:CARD_TITLE_MAX]
    if body:
        card["body"] = body[:CARD_BODY_MAX]
    if media:
        card["media"] = [media]
    if actions:
        card["actions"] = actions
    return card


def content_types(content: dict[str, Any]) -> dict[str, Any]:
    """The Content API ``types`` for ``rich`` content: its RCS form and its SMS text."""
    text = rich_text(content).strip()
    cards = [c for c in (content.get("cards") or []) if isinstance(c, dict)]
    message_actions = _actions([*(content.get("buttons") or []), *(content.get("quick_replies") or [])], MAX_ACTIONS)
    types: dict[str, Any] = {}
    if len(cards) >= 2:
        types["twilio/carousel"] = {
            "body": (text or content_text(content))[:CARD_BODY_MAX],
            "cards": [
                {
                    k: v
                    for k, v in {
                        "title": str(card.get("title") or "")[:CARD_TITLE_MAX],
                        "body": _card_text(card)[:CARD_BODY_MAX],
                        "media": _media(card),
                        "actions": _actions(card.get("buttons") or card.get("actions"), CAROUSEL_CARD_ACTIONS_MAX),
                    }.items()
                    if v
                }
                for card in cards[:CAROUSEL_MAX]
            ],
        }
    else:
        card = cards[0] if cards else {}
        body = "\n\n".join(part for part in (text, _card_text(card)) if part)
        actions = _actions(card.get("buttons") or card.get("actions"), MAX_ACTIONS)
        actions = (actions + message_actions)[:MAX_ACTIONS]
        title = str(card.get("title") or "")
        if not title and not body:
            # A card needs a title or a body; the text rendering names the options.
            body = content_text(content)
        types["twilio/card"] = _card(title, body, _media(card), actions)
    types["twilio/text"] = {"body": content_text(content)[:SMS_TEXT_MAX] or text[:SMS_TEXT_MAX]}
    return types


def template_request(content: dict[str, Any], *, language: str = "en") -> tuple[str, dict[str, Any]]:
    """The Content API request body for ``content``, and the digest that names it."""
    types = content_types(content)
    digest = hashlib.sha256(json.dumps([language, types], sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return digest, {"friendly_name": f"roomkit_{digest[:40]}", "language": language, "types": types}
