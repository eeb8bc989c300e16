"""Fit content to what a target channel can carry.

A channel's capabilities name the content types it takes and its maximum text
length (``rooms.enums.DEFAULT_CAPABILITIES``, overridable per channel). Content
it cannot take becomes its text rendering; long text is cut with an ellipsis.
"""

from __future__ import annotations

from typing import Any

from rooms.content import content_text

ELLIPSIS = "…"


def truncate(text: str, max_length: int | None) -> str:
    if max_length is None or len(text) <= max_length:
        return text
    return text[: max(max_length - 1, 0)] + ELLIPSIS


def transcode(content: dict[str, Any], capabilities: dict[str, Any]) -> dict[str, Any]:
    """Return content that a channel with ``capabilities`` can carry."""
    media_types = capabilities.get("media_types") or ["text"]
    max_length = capabilities.get("max_length")
    kind = content.get("type")
    if kind in media_types and kind not in ("system", "edit", "delete"):
        if kind == "text" and max_length is not None and len(content["body"]) > max_length:
            return {**content, "body": truncate(content["body"], max_length)}
        if kind == "media" and content.get("caption") and max_length is not None:
            return {**content, "caption": truncate(content["caption"], max_length)}
        if kind == "rich" and max_length is not None and len(content["body"]) > max_length:
            # The vendor would refuse it, and markup cannot be cut safely: send
            # the text rendering, cut, instead.
            return {"type": "text", "body": truncate(content_text(content), max_length)}
        return content
    if kind == "edit" and "edit" in media_types:
        return content
    return {"type": "text", "body": truncate(content_text(content), max_length)}
