"""Fit content to what a target channel can carry.

A channel's capabilities name the content types it takes and its maximum text
length (``rooms.enums.DEFAULT_CAPABILITIES``, overridable per channel), and may
name the platform's other limits, which apply here for every adapter:
``max_options`` (buttons and quick replies one rich message may carry: more
and the message goes as its text, which lists them all, rather than losing
some), ``max_caption_length`` (a media caption's own limit, else
``max_length``) and ``max_media_bytes`` (a larger file goes as a link). Content
it cannot take becomes its text rendering; long text is cut with an ellipsis.
SMS targets (``sms_segments``) are cut with three ASCII dots, since ``…`` is
not in the GSM-7 alphabet and would move the whole text to UCS-2 (70
characters a segment instead of 160), and their deliveries record how many
segments the text costs (``rooms.inbound.sms_encoding``).

Content that renders to nothing for a target (rich content that is only
markup, a composite whose parts all render empty, a media attachment of an
unknown type on a text-only channel) is not sent as an empty message:
``transcode_for`` says so, and the delivery is recorded as failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rooms.content.kinds import content_text
from rooms.inbound.sms_encoding import sms_size

ELLIPSIS = "…"
SMS_ELLIPSIS = "..."
TRANSCODING_FAILED = "transcoding_failed"


def truncate(text: str, max_length: int | None, ellipsis: str = ELLIPSIS) -> str:
    if max_length is None or len(text) <= max_length:
        return text
    return text[: max(max_length - len(ellipsis), 0)] + ellipsis


def transcode(content: dict[str, Any], capabilities: dict[str, Any]) -> dict[str, Any]:
    """Return content that a channel with ``capabilities`` can carry."""
    media_types = capabilities.get("media_types") or ["text"]
    max_length = capabilities.get("max_length")
    ellipsis = SMS_ELLIPSIS if capabilities.get("sms_segments") else ELLIPSIS
    kind = content.get("type")
    if kind in media_types and kind not in ("system", "edit", "delete"):
        if kind == "text" and max_length is not None and len(content["body"]) > max_length:
            return {**content, "body": truncate(content["body"], max_length, ellipsis)}
        if kind == "media" and _too_large(content, capabilities.get("max_media_bytes")):
            return {"type": "text", "body": truncate(_as_link(content), max_length, ellipsis)}
        caption_length = capabilities.get("max_caption_length", max_length)
        if kind == "media" and content.get("caption") and caption_length is not None:
            return {**content, "caption": truncate(content["caption"], caption_length, ellipsis)}
        if kind == "rich" and _options(content) > capabilities.get("max_options", _options(content)):
            return {"type": "text", "body": truncate(content_text(content), max_length, ellipsis)}
        if kind == "rich" and max_length is not None and len(content["body"]) > max_length:
            # The vendor would refuse it, and markup cannot be cut safely: send
            # the text rendering, cut, instead.
            return {"type": "text", "body": truncate(content_text(content), max_length, ellipsis)}
        return content
    if kind == "edit" and "edit" in media_types:
        return content
    return {"type": "text", "body": truncate(content_text(content), max_length, ellipsis)}


def _options(content: dict[str, Any]) -> int:
    """How many choices a rich message offers: its buttons and its quick replies."""
    return len(content.get("buttons") or []) + len(content.get("quick_replies") or [])


def _too_large(content: dict[str, Any], max_bytes: int | None) -> bool:
    size = content.get("size")
    return max_bytes is not None and isinstance(size, int) and size > max_bytes


def _as_link(content: dict[str, Any]) -> str:
    """A file too large for the platform: its caption (or name) and where to fetch it."""
    label = content.get("caption") or content.get("filename") or ""
    return f"{label}\n{content.get('url', '')}".strip()


@dataclass(frozen=True)
class Transcoded:
    """Content for one target, or why there is none; SMS segments when the target counts them."""

    content: dict[str, Any] | None
    failure: str = ""
    segments: int | None = None


def _renders_empty(content: dict[str, Any]) -> bool:
    kind = content.get("type")
    if kind == "rich":
        has_options = content.get("buttons") or content.get("cards") or content.get("quick_replies")
        return not has_options and not content_text(content).strip()
    if kind in ("text", "composite"):
        return not content_text(content).strip()
    return False


def transcode_for(content: dict[str, Any], capabilities: dict[str, Any]) -> Transcoded:
    """``transcode``, refusing a rendering with nothing to say, and counting SMS segments."""
    out = transcode(content, capabilities)
    if _renders_empty(out):
        why = f"{content.get('type')} content renders to nothing for this channel"
        return Transcoded(None, failure=f"{TRANSCODING_FAILED}: {why}")
    segments = None
    if capabilities.get("sms_segments"):
        text = out["body"] if out.get("type") == "text" else out.get("caption")
        segments = sms_size(text).segments if text else None
    return Transcoded(out, segments=segments)
