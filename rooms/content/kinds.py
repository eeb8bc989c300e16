"""Typed event content: validation and a plain-text reading of every kind.

Content is stored as JSON (``RoomEvent.content``) with a ``type`` key. Input
from any edge is validated here, so a malformed payload is a clear 400 and
never a half-written event.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from rooms.content.storable import find_unstorable, storable_text
from rooms.errors import InvalidInput

MAX_TEXT = 100_000
Url = Annotated[str, Field(min_length=1, max_length=2048)]


class _Content(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metadata: dict[str, Any] | None = None


class TextContent(_Content):
    type: Literal["text"]
    body: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]


class RichContent(_Content):
    type: Literal["rich"]
    body: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
    format: Literal["html", "markdown"] = "markdown"
    plain_text: str | None = None
    buttons: list[dict[str, Any]] | None = None
    cards: list[dict[str, Any]] | None = None
    quick_replies: list[str] | None = None


class MediaContent(_Content):
    type: Literal["media"]
    url: Url
    mime_type: Annotated[str, Field(min_length=3, max_length=127)]
    filename: str | None = None
    size: Annotated[int, Field(ge=0)] | None = None
    caption: Annotated[str, Field(max_length=4096)] | None = None


class LocationContent(_Content):
    type: Literal["location"]
    latitude: Annotated[float, Field(ge=-90, le=90)]
    longitude: Annotated[float, Field(ge=-180, le=180)]
    label: str | None = None
    address: str | None = None


class AudioContent(_Content):
    type: Literal["audio"]
    url: Url
    mime_type: str | None = None
    duration_ms: Annotated[int, Field(ge=0)] | None = None
    transcript: str | None = None


class VideoContent(_Content):
    type: Literal["video"]
    url: Url
    mime_type: str | None = None
    duration_ms: Annotated[int, Field(ge=0)] | None = None
    caption: str | None = None


class TemplateContent(_Content):
    type: Literal["template"]
    name: Annotated[str, Field(min_length=1, max_length=255)]
    language: str | None = None
    parameters: dict[str, Any] | list[Any] | None = None
    body: str | None = None


class SystemContent(_Content):
    type: Literal["system"]
    body: Annotated[str, Field(max_length=MAX_TEXT)] = ""
    code: str | None = None
    data: dict[str, Any] | None = None


class DeleteContent(_Content):
    type: Literal["delete"]
    target_event_id: Annotated[str, Field(min_length=1, max_length=64)]
    reason: str | None = None


Simple = TextContent | RichContent | MediaContent | LocationContent | AudioContent | VideoContent | TemplateContent


class CompositeContent(_Content):
    type: Literal["composite"]
    parts: Annotated[list[Annotated[Simple, Field(discriminator="type")]], Field(min_length=1, max_length=20)]


class EditContent(_Content):
    type: Literal["edit"]
    target_event_id: Annotated[str, Field(min_length=1, max_length=64)]
    new_content: Annotated[Simple, Field(discriminator="type")]


AnyContent = Annotated[
    Simple | CompositeContent | SystemContent | EditContent | DeleteContent,
    Field(discriminator="type"),
]
_adapter: TypeAdapter[Any] = TypeAdapter(AnyContent)


def validate_content(raw: Any) -> dict[str, Any]:
    """Return normalised content or raise InvalidInput naming the first problem."""
    # The plain-text case is by far the most common; skip pydantic for it.
    if type(raw) is dict and raw.get("type") == "text" and len(raw) == 2:
        body = raw.get("body")
        if type(body) is str and 0 < len(body) <= MAX_TEXT and storable_text(body):
            return raw
    try:
        model = _adapter.validate_python(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "content"
        raise InvalidInput(f"invalid content at '{where}': {err['msg']}", code="invalid_content") from None
    content = model.model_dump(exclude_none=True)
    _check_storable(content)
    return content


def _check_storable(content: dict[str, Any]) -> None:
    check_storable_json(content, "content", code="invalid_content")


def check_storable_json(value: Any, what: str, *, code: str = "invalid_input") -> None:
    """Refuse what one of our databases cannot store, so both answer the same 400.

    Free-form parts (metadata, buttons, parameters) may hold NaN, infinity or
    non-JSON objects, which SQLite's JSON check and PostgreSQL's jsonb refuse
    with a 500; any text may hold NUL or an unpaired surrogate
    (``rooms.content.storable``).
    """
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        raise InvalidInput(f"{what} must be plain JSON: no NaN, infinity or other objects", code=code) from None
    if find_unstorable(value) is not None:
        raise InvalidInput(f"{what} must not contain NUL characters or unpaired surrogates", code=code)


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "style"}:
            self._skip += 1
        elif tag in {"br", "p", "div", "li", "tr"}:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style"} and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


_KNOWN_MEDIA_MAJOR_TYPES = frozenset({"image", "audio", "video", "application", "text", "font", "model"})


def _known_media_type(mime_type: str) -> bool:
    major, _, minor = mime_type.partition("/")
    return major.lower() in _KNOWN_MEDIA_MAJOR_TYPES and bool(minor)


def content_text(content: dict[str, Any]) -> str:
    """A faithful plain-text rendering of any content, for text-only channels."""
    kind = content.get("type")
    if kind in ("text", "system"):
        return content.get("body", "")
    if kind == "rich":
        if content.get("plain_text"):
            return content["plain_text"]
        body = content.get("body", "")
        text = html_to_text(body) if content.get("format") == "html" else body
        replies = content.get("quick_replies") or []
        buttons = [b.get("title") or b.get("text") for b in content.get("buttons") or []]
        options = [o for o in [*buttons, *replies] if o]
        return text + (("\n" + " | ".join(options)) if options else "")
    if kind == "media":
        caption = content.get("caption")
        if not content.get("filename") and not _known_media_type(content.get("mime_type", "")):
            # A link to bytes of an unknown kind tells a reader nothing.
            return caption or ""
        label = content.get("filename") or content.get("url", "")
        return f"[Media: {label}]" + (f" {caption}" if caption else "")
    if kind == "location":
        where = f"{content['latitude']:.6f}, {content['longitude']:.6f}"
        label = content.get("label") or content.get("address")
        return f"[Location: {label} ({where})]" if label else f"[Location: {where}]"
    if kind == "audio":
        transcript = content.get("transcript")
        return transcript if transcript else f"[Audio: {content.get('url', '')}]"
    if kind == "video":
        caption = content.get("caption")
        return f"[Video: {content.get('url', '')}]" + (f" {caption}" if caption else "")
    if kind == "template":
        return content.get("body") or f"[Template: {content.get('name', '')}]"
    if kind == "composite":
        return "\n".join(content_text(part) for part in content.get("parts", []))
    if kind == "edit":
        return "[Edited] " + content_text(content.get("new_content", {}))
    if kind == "delete":
        return "[Message deleted]"
    return ""
