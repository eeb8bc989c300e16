"""Our content as a WhatsApp Cloud API message object (``POST /{phone_number_id}/messages``).

Kinds map as: text → ``text``; media → ``image``/``video``/``audio``/
``document`` by its type, sent by ``link``; location → ``location``;
template → ``template`` with its parameters; rich content with options →
``interactive``: up to 3 reply ``button``s (titles of at most 20
characters, a body of at most 1024), else a ``list`` of up to 10 rows
(titles of at most 24 characters); anything beyond those limits (more
options, longer labels, cards, links) is sent as its text, as is any other
kind. The limits are Meta's (Cloud API "Interactive messages").
"""

from __future__ import annotations

from typing import Any

from rooms.content.kinds import content_text
from rooms.inbound.transcoding import truncate

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_REPLY_BUTTONS = 3
MAX_BUTTON_TITLE = 20
MAX_BUTTON_BODY = 1024
MAX_LIST_ROWS = 10
MAX_ROW_TITLE = 24
MAX_ROW_ID = 200
MAX_LIST_BODY = 4096
LIST_BUTTON_LABEL = "Choose"
DEFAULT_TEMPLATE_LANGUAGE = "en_US"


def recipient_number(recipient: str) -> str:
    """WhatsApp's ``to``: the E.164 number's digits (Meta's examples give no ``+``)."""
    return recipient.strip().removeprefix("+")


def message_object(content: dict[str, Any]) -> dict[str, Any]:
    """The type-specific part of the message object (``type`` and its object) for ``content``."""
    kind = content.get("type")
    if kind == "text":
        return _text(content.get("body", ""))
    if kind == "media":
        return _media(content)
    if kind == "location":
        location = {"latitude": content["latitude"], "longitude": content["longitude"]}
        for ours, theirs in (("label", "name"), ("address", "address")):
            if content.get(ours):
                location[theirs] = content[ours]
        return {"type": "location", "location": location}
    if kind == "template":
        return template_object(content)
    if kind == "rich":
        return _rich(content)
    return _text(content_text(content))


def _text(body: str) -> dict[str, Any]:
    return {"type": "text", "text": {"body": truncate(body, MAX_TEXT), "preview_url": False}}


def _media(content: dict[str, Any]) -> dict[str, Any]:
    mime = str(content.get("mime_type") or "")
    major = mime.split("/", 1)[0]
    kind = {"image": "image", "video": "video", "audio": "audio"}.get(major, "document")
    media: dict[str, Any] = {"link": content["url"]}
    caption = content.get("caption")
    # Audio takes no caption: say it as text instead of losing it.
    if caption and kind == "audio":
        return _text(content_text(content))
    if caption:
        media["caption"] = truncate(caption, MAX_CAPTION)
    if kind == "document" and content.get("filename"):
        media["filename"] = content["filename"]
    return {"type": kind, kind: media}


def template_object(content: dict[str, Any]) -> dict[str, Any]:
    """A ``template`` message: its name, language and body parameters.

    ``parameters`` as a list fills ``{{1}}``, ``{{2}}``… of the body; as an
    object, named parameters (``{{first_name}}``); an object with
    ``components`` is Meta's own components list, sent as given (headers,
    buttons).
    """
    template: dict[str, Any] = {
        "name": content["name"],
        "language": {"code": content.get("language") or DEFAULT_TEMPLATE_LANGUAGE},
    }
    parameters = content.get("parameters")
    if isinstance(parameters, dict) and isinstance(parameters.get("components"), list):
        template["components"] = parameters["components"]
    elif isinstance(parameters, list) and parameters:
        template["components"] = [{"type": "body", "parameters": [{"type": "text", "text": str(p)} for p in parameters]}]
    elif isinstance(parameters, dict) and parameters:
        named = [{"type": "text", "parameter_name": str(k), "text": str(v)} for k, v in parameters.items()]
        template["components"] = [{"type": "body", "parameters": named}]
    return {"type": "template", "template": template}


def _options(content: dict[str, Any]) -> list[tuple[str, str]] | None:
    """The rich content's reply options as ``(id, title)``; None when one cannot be a reply (a link, a call)."""
    options: list[tuple[str, str]] = []
    for button in content.get("buttons") or []:
        if not isinstance(button, dict) or button.get("url") or button.get("phone"):
            return None
        title = str(button.get("title") or button.get("text") or "").strip()
        if not title:
            return None
        options.append((str(button.get("payload") or button.get("id") or title), title))
    for reply in content.get("quick_replies") or []:
        title = str(reply).strip()
        if title:
            options.append((title, title))
    return options


def _rich_text(content: dict[str, Any]) -> str:
    """The body alone (the options go as buttons or rows)."""
    return content_text({**content, "buttons": None, "quick_replies": None})


def _rich(content: dict[str, Any]) -> dict[str, Any]:
    options = _options(content)
    body = _rich_text(content)
    ids = [i for i, _ in options or []]
    fits = options and not content.get("cards") and body.strip() and len(set(ids)) == len(ids)
    if fits and len(options) <= MAX_REPLY_BUTTONS and len(body) <= MAX_BUTTON_BODY:
        if all(len(title) <= MAX_BUTTON_TITLE for _, title in options):
            buttons = [{"type": "reply", "reply": {"id": i[:256], "title": t}} for i, t in options]
            return {
                "type": "interactive",
                "interactive": {"type": "button", "body": {"text": body}, "action": {"buttons": buttons}},
            }
    if fits and len(options) <= MAX_LIST_ROWS and len(body) <= MAX_LIST_BODY:
        if all(len(title) <= MAX_ROW_TITLE and len(i) <= MAX_ROW_ID for i, title in options):
            rows = [{"id": i, "title": t} for i, t in options]
            action = {"button": LIST_BUTTON_LABEL, "sections": [{"title": "Options", "rows": rows}]}
            return {"type": "interactive", "interactive": {"type": "list", "body": {"text": body}, "action": action}}
    return _text(_fallback_text(content))


def _fallback_text(content: dict[str, Any]) -> str:
    """Rich content WhatsApp cannot show natively, as text: the body, cards, and options with their links."""
    lines = [content_text({**content, "buttons": None})]
    for card in content.get("cards") or []:
        if isinstance(card, dict):
            lines.append("\n".join(str(card[k]) for k in ("title", "description", "subtitle", "image_url") if card.get(k)))
    links = [
        f"{b.get('title') or b.get('text')}: {b.get('url') or b.get('phone')}"
        for b in content.get("buttons") or []
        if isinstance(b, dict) and (b.get("url") or b.get("phone"))
    ]
    plain = [
        str(b.get("title") or b.get("text"))
        for b in content.get("buttons") or []
        if isinstance(b, dict) and not (b.get("url") or b.get("phone")) and (b.get("title") or b.get("text"))
    ]
    if plain:
        lines.append(" | ".join(plain))
    lines.extend(links)
    return "\n".join(line for line in lines if line)
