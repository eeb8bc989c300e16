"""Our content as a Bot Framework message activity: text, or rich content as an Adaptive Card.

Rich content (``body``, ``buttons``, ``cards``, ``quick_replies``) becomes one
Adaptive Card attachment (``application/vnd.microsoft.card.adaptive``,
schema 1.4, the version Teams renders on every client): the body as a
wrapping ``TextBlock`` (Adaptive Cards read a subset of Markdown; HTML bodies
go as their text), each card as a ``Container`` (image, bold title,
description, its buttons as an ``ActionSet``), and the buttons and quick
replies as the card's actions: a button with a ``url`` opens it
(``Action.OpenUrl``); any other is an ``Action.Submit`` whose ``data`` carries
its label and payload under ``roomkit`` and a Teams ``messageBack`` so the
person's choice shows in the chat as their reply. Teams shows at most
``MAX_ACTIONS`` actions on a card (the channel's capability ``max_buttons``
may lower it); the rest are dropped.

Text is sent as ``textFormat: "plain"`` (a person's text is not Markdown);
media and other kinds reach a Teams channel as their text rendering
(``rooms.inbound.transcoding``), since its capabilities take text and rich.
"""

from __future__ import annotations

from typing import Any

from channels_app.providers.teams.activities import SUBMIT_KEY
from rooms.content.kinds import content_text, html_to_text
from rooms.inbound.transcoding import truncate

ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
CARD_VERSION = "1.4"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
MAX_ACTIONS = 6
MAX_TITLE = 200
MAX_TEXT = 28_000


def activity_for(content: dict[str, Any], *, max_actions: int = MAX_ACTIONS) -> dict[str, Any]:
    """The type-specific part of a ``message`` activity for ``content`` (the caller adds from/recipient/conversation)."""
    if content.get("type") == "rich":
        card = adaptive_card(content, max_actions=max_actions)
        activity: dict[str, Any] = {"attachments": [{"contentType": ADAPTIVE_CARD, "content": card}]}
        # Notifications and clients that show no cards read the activity's text (a summary).
        summary = _plain(content)
        if summary:
            activity["summary"] = truncate(summary, 200)
        return activity
    return {"text": truncate(content_text(content), MAX_TEXT), "textFormat": "plain"}


def _plain(content: dict[str, Any]) -> str:
    if content.get("plain_text"):
        return str(content["plain_text"])
    body = str(content.get("body") or "")
    return html_to_text(body) if content.get("format") == "html" else body


def adaptive_card(content: dict[str, Any], *, max_actions: int = MAX_ACTIONS) -> dict[str, Any]:
    body: list[dict[str, Any]] = []
    text = _plain(content).strip()
    if text:
        body.append({"type": "TextBlock", "text": truncate(text, MAX_TEXT), "wrap": True})
    for card in content.get("cards") or []:
        if isinstance(card, dict):
            container = _container(card, max_actions)
            if container:
                body.append(container)
    options = [*(content.get("buttons") or []), *(content.get("quick_replies") or [])]
    actions = [a for a in (_action(o) for o in options) if a][:max_actions]
    card: dict[str, Any] = {"type": "AdaptiveCard", "$schema": CARD_SCHEMA, "version": CARD_VERSION, "body": body}
    if actions:
        card["actions"] = actions
    return card


def _first(data: dict[str, Any], *names: str) -> str:
    for name in names:
        value = data.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _container(card: dict[str, Any], max_actions: int) -> dict[str, Any] | None:
    items: list[dict[str, Any]] = []
    image = _first(card, "image_url", "image", "media_url")
    title = _first(card, "title")
    description = _first(card, "description", "subtitle", "text")
    if image:
        items.append({"type": "Image", "url": image, "size": "Stretch", **({"altText": title} if title else {})})
    if title:
        heading = {"type": "TextBlock", "text": truncate(title, MAX_TITLE), "weight": "Bolder", "size": "Medium", "wrap": True}
        items.append(heading)
    if description:
        items.append({"type": "TextBlock", "text": description, "wrap": True})
    actions = [a for a in (_action(b) for b in card.get("buttons") or []) if a][:max_actions]
    if actions:
        items.append({"type": "ActionSet", "actions": actions})
    if not items:
        return None
    return {"type": "Container", "separator": True, "items": items}


def _action(option: Any) -> dict[str, Any] | None:
    """A button or quick reply as an Adaptive Card action: open its URL, or submit its choice as the person's reply."""
    if isinstance(option, str):
        option = {"title": option}
    if not isinstance(option, dict):
        return None
    title = _first(option, "title", "text", "label")
    if not title:
        return None
    url = _first(option, "url")
    if url:
        return {"type": "Action.OpenUrl", "title": truncate(title, MAX_TITLE), "url": url}
    payload = _first(option, "payload", "postback", "value") or title
    return {
        "type": "Action.Submit",
        "title": truncate(title, MAX_TITLE),
        "data": {
            SUBMIT_KEY: {"title": title, "payload": payload},
            # messageBack: Teams shows the label in the chat as the person's message and sends it as the text.
            "msteams": {"type": "messageBack", "displayText": title, "text": title},
        },
    }
